"""The embedded default dataset: synthetic distortions of photos that ship with scikit-image (no download).

References are non-overlapping `image_size` squares cut at native resolution from the colour photos in
`skimage.data` (astronaut, chelsea, coffee, rocket, immunohistochemistry, the left motorcycle view), then,
when more are asked for, from its greyscale photos and textures (camera, brick, grass, gravel, coins)
repeated over three channels. Squares with too little detail (night sky, flat walls) are skipped: SSIM is
degenerate there. Each square is its own reference id (`coffee_r3`), so splits by reference never share
pixels between train and test.

Every reference is distorted by every selected type of `biqa.data.datasets.distortions` at levels 1..`levels`. The
pristine references are not samples, as in LIVE, CSIQ, TID2013 and KADID-10k whose protocols score only
distorted images: a reference's SSIM to itself is 1 by definition, not a measurement, and would add a
constant-label cluster outside every distortion's range. Pairs where a distortion cannot act (colour
distortions of greyscale references) are skipped for the same reason, rather than kept as pristine images
with a distortion label.

The pseudo-MOS is a full-reference measure of the distorted image against its reference, in [0, 1],
higher is better:
- "ssim" (default): SSIM of Wang et al. (2004) with their settings (11-tap Gaussian window, sigma 1.5,
  K1 = 0.01, K2 = 0.03, no border padding) per RGB channel, averaged; it matches
  `skimage.metrics.structural_similarity(..., gaussian_weights=True, use_sample_covariance=False)` to
  float precision, at half its cost.
- "ms_ssim": torchmetrics' multi-scale SSIM (five scales; needs `image_size` > 160).
SSIM can dip below zero for extreme noise; scores are clipped at 0 (raw_score too, so that the scale maps
it exactly; the manifest keeps the unclipped value).

The dataset is cached under `root/<hash>/`, the hash of the settings, of this generator's code and of the
library versions that decide the bytes (PNG files, `manifest.csv`, and `complete.json` written last with
the manifest's hash). A cache is used only if `complete.json` matches the settings and the manifest and
every image file has the size recorded; anything else is rebuilt. A build writes into a private
`.partial-*` folder renamed into place at the end, so a killed build or two processes building at once
never leave a half-written cache under the final name. Large builds use worker processes (spawned, so a
script that builds the dataset at import time needs the usual `if __name__ == "__main__":` guard).
"""

from __future__ import annotations

import csv
import functools
import hashlib
import io
import json
import logging
import multiprocessing
import os
import shutil
import time
import uuid
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import PIL
import scipy
import skimage
from numpy.typing import NDArray
from PIL import Image
from scipy import ndimage
from skimage import data as skimage_data
from tqdm.auto import tqdm

from biqa.data.datasets import distortions as distortions_module
from biqa.data.datasets.distortions import DISTORTION_NAMES, LEVELS, distort
from biqa.data.datasets.records import DatasetRecords, ImageRecord, ScoreScale

log = logging.getLogger(__name__)


@functools.cache
def _generator_fingerprint() -> str:
    """The code and the libraries that decide the images' bytes: any change to them makes a new cache."""
    parts = [Path(__file__).read_bytes(), Path(distortions_module.__file__).read_bytes()]
    parts += [f"{lib.__name__}={lib.__version__}".encode() for lib in (np, scipy, PIL, skimage)]
    return hashlib.sha256(b"\0".join(parts)).hexdigest()[:16]


COLOUR_SOURCES: dict[str, Callable[[], NDArray[np.uint8]]] = {
    "astronaut": skimage_data.astronaut,
    "chelsea": skimage_data.chelsea,
    "coffee": skimage_data.coffee,
    "rocket": skimage_data.rocket,
    "immunohistochemistry": skimage_data.immunohistochemistry,
    "motorcycle": lambda: skimage_data.stereo_motorcycle()[0],
}
GREY_SOURCES: dict[str, Callable[[], NDArray[np.uint8]]] = {
    "camera": skimage_data.camera,
    "brick": skimage_data.brick,
    "grass": skimage_data.grass,
    "gravel": skimage_data.gravel,
    "coins": skimage_data.coins,
}

MIN_DETAIL = 0.015
"""Least mean luminance gradient (per pixel, luminance in [0, 1]) of a usable reference square."""

MS_SSIM_MIN_SIZE = 161

_STALE_PARTIAL_S = 24 * 3600
_IMAGES_PER_WORKER = 300
"""Least images per worker process when `workers` is left to the generator."""


@dataclass(frozen=True)
class Reference:
    name: str
    pixels: NDArray[np.uint8]


@functools.cache
def _photo(load: Callable[[], NDArray[np.uint8]]) -> NDArray[np.uint8]:
    """Each photo is decoded once per process; squares are copied out of it, never views into it."""
    return load()


def _detail(square: NDArray[np.uint8]) -> float:
    luminance = square.mean(axis=2) / 255.0
    grad_rows, grad_cols = np.gradient(luminance)
    return float(np.hypot(grad_rows, grad_cols).mean())


def _squares(photo: NDArray[np.uint8], size: int) -> Iterator[NDArray[np.uint8]]:
    """Non-overlapping `size` squares on a grid centred in the photo, detailed ones only, row-major."""
    if photo.ndim == 2:
        photo = np.repeat(photo[:, :, None], 3, axis=2)
    height, width = photo.shape[:2]
    rows, cols = height // size, width // size
    top, left = (height - rows * size) // 2, (width - cols * size) // 2
    for r in range(rows):
        for c in range(cols):
            square = photo[top + r * size : top + (r + 1) * size, left + c * size : left + (c + 1) * size]
            if _detail(square) >= MIN_DETAIL:
                yield square.copy()


def cut_references(image_size: int, count: int) -> list[Reference]:
    """The first `count` reference squares: photos taken in turn so that few references still vary."""
    pool: list[Reference] = []
    for sources in (COLOUR_SOURCES, GREY_SOURCES):
        remaining = {name: _squares(_photo(load), image_size) for name, load in sources.items()}
        taken = dict.fromkeys(remaining, 0)
        while remaining and len(pool) < count:
            for name in list(remaining):
                square = next(remaining[name], None)
                if square is None:
                    del remaining[name]
                    continue
                taken[name] += 1
                pool.append(Reference(f"{name}_r{taken[name]}", square))
        if len(pool) >= count:
            return pool[:count]
    raise ValueError(
        f"only {len(pool)} reference squares of {image_size} px can be cut from the scikit-image photos, "
        f"{count} were asked for; lower num_references or image_size"
    )


def _ssim_moments(images: list[NDArray[np.float32]]) -> NDArray[np.float32]:
    """Gaussian-weighted local means (11-tap window, sigma 1.5), without the border the window hangs off."""
    return ndimage.gaussian_filter(np.stack(images), sigma=(0, 1.5, 1.5, 0), truncate=3.5)[:, 5:-5, 5:-5]


class StructuralSimilarity:
    """SSIM (Wang et al. 2004) against one fixed reference, per RGB channel then averaged.

    The reference's local statistics are computed once: every distorted version of it reuses them.
    """

    def __init__(self, reference: NDArray[np.uint8]) -> None:
        self.reference = reference.astype(np.float32) / 255.0
        self.mean, self.square = _ssim_moments([self.reference, self.reference**2])

    def __call__(self, distorted: NDArray[np.uint8]) -> float:
        x = distorted.astype(np.float32) / 255.0
        mean_x, square_x, product = _ssim_moments([x, x * x, x * self.reference])
        c1, c2 = 0.01**2, 0.03**2
        covariance = product - mean_x * self.mean
        variances = square_x - mean_x**2 + self.square - self.mean**2
        ssim_map = ((2 * mean_x * self.mean + c1) * (2 * covariance + c2)) / (
            (mean_x**2 + self.mean**2 + c1) * (variances + c2)
        )
        return float(ssim_map.mean(dtype=np.float64))


class MultiScaleStructuralSimilarity:
    """torchmetrics' five-scale MS-SSIM against one fixed reference."""

    def __init__(self, reference: NDArray[np.uint8]) -> None:
        self.reference = reference

    def __call__(self, distorted: NDArray[np.uint8]) -> float:
        # Imported here: torch and torchmetrics take seconds to import and only this optional measure needs them.
        import torch
        from torchmetrics.functional.image import multiscale_structural_similarity_index_measure

        pair = torch.from_numpy(np.stack([distorted, self.reference])).permute(0, 3, 1, 2).double() / 255.0
        # relu keeps the product of per-scale terms defined when noise drives one of them negative.
        value = multiscale_structural_similarity_index_measure(
            pair[:1], pair[1:], data_range=1.0, normalize="relu"
        )
        return float(value)


MEASURES: dict[str, Callable[[NDArray[np.uint8]], Callable[[NDArray[np.uint8]], float]]] = {
    "ssim": StructuralSimilarity,
    "ms_ssim": MultiScaleStructuralSimilarity,
}
"""Full-reference measures by name: built on a reference, called on a distorted version of it."""


def _available_cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@contextmanager
def _parallel_map(workers: int) -> Iterator[Callable]:
    """`map` over `workers` processes (in this process when one), results in order."""
    if workers == 1:
        yield map
        return
    # spawn, not fork: the parent may hold torch or BLAS thread pools that a forked child would inherit locked.
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        try:
            yield pool.map
        except BaseException:
            pool.shutdown(cancel_futures=True)
            raise


def _image_seed(seed: int, reference: str, distortion: str, level: int) -> list[int]:
    """A seed that depends only on the image's own key, so a reference's images do not depend on the others."""
    return [seed, zlib.crc32(f"{reference}/{distortion}/{level}".encode())]


def _png_bytes(image: NDArray[np.uint8]) -> bytes:
    buffer = io.BytesIO()
    # Fast compression: the cache is rebuilt rarely but its build time is on every first run.
    Image.fromarray(image).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def _file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class SyntheticIQA:
    """Callable returning the embedded default dataset's records, generating and caching it on first use.

    `levels` keeps the generator's weakest levels 1..`levels`; `distortions` selects and orders the types
    (all of `DISTORTION_NAMES` by default), and record labels index this list. `seed` drives the random
    parts of the distortions (noise, blur direction); the references are the same for every seed.
    `workers` processes generate references in parallel (None: one per available CPU, fewer for small
    builds); it does not change a single byte of the result, so it is not part of the cache key.
    """

    def __init__(
        self,
        root: str | Path,
        num_references: int = 32,
        image_size: int = 192,
        levels: int = LEVELS,
        distortions: list[str] | None = None,
        seed: int = 0,
        quality_measure: str = "ssim",
        workers: int | None = None,
    ) -> None:
        names = list(distortions) if distortions is not None else list(DISTORTION_NAMES)
        unknown = [name for name in names if name not in DISTORTION_NAMES]
        if unknown or not names or len(set(names)) != len(names):
            raise ValueError(
                f"distortions must be distinct names from {DISTORTION_NAMES}; got {names} (unknown: {unknown})"
            )
        if not 1 <= levels <= LEVELS:
            raise ValueError(f"levels must be in 1..{LEVELS}, got {levels}")
        if quality_measure not in MEASURES:
            raise ValueError(f"quality_measure must be one of {list(MEASURES)}, got {quality_measure!r}")
        if image_size < 32:
            raise ValueError(f"image_size must be at least 32 px for an 11-tap SSIM window, got {image_size}")
        if quality_measure == "ms_ssim" and image_size < MS_SSIM_MIN_SIZE:
            raise ValueError(
                f"ms_ssim needs image_size >= {MS_SSIM_MIN_SIZE} (five scales), got {image_size}"
            )
        if num_references < 1:
            raise ValueError(f"num_references must be positive, got {num_references}")
        if workers is not None and workers < 1:
            raise ValueError(f"workers must be positive (or None for every available CPU), got {workers}")
        self.root = Path(root)
        self.num_references = num_references
        self.image_size = image_size
        self.levels = levels
        self.distortions = names
        self.seed = seed
        self.quality_measure = quality_measure
        self.workers = workers

    @property
    def settings(self) -> dict[str, object]:
        return {
            "generator": _generator_fingerprint(),
            "num_references": self.num_references,
            "image_size": self.image_size,
            "levels": self.levels,
            "distortions": self.distortions,
            "seed": self.seed,
            "quality_measure": self.quality_measure,
        }

    @property
    def cache_key(self) -> str:
        return hashlib.sha256(json.dumps(self.settings, sort_keys=True).encode()).hexdigest()[:16]

    @property
    def cache_dir(self) -> Path:
        return self.root / self.cache_key

    def __call__(self) -> DatasetRecords:
        problem = self._cache_problem(self.cache_dir)
        if problem is not None:
            if self.cache_dir.exists():
                log.warning("rebuilding the synthetic dataset at %s: %s", self.cache_dir, problem)
            else:
                log.info("generating the synthetic dataset at %s", self.cache_dir)
            self._build()
        return self._records(self.cache_dir)

    def _cache_problem(self, folder: Path) -> str | None:
        """Why the cache in `folder` cannot be used, or None when it is complete and matches the settings."""
        marker = folder / "complete.json"
        if not marker.is_file():
            return "no complete.json (never built, or the build did not finish)"
        try:
            completion = json.loads(marker.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            return f"complete.json unreadable ({error})"
        if completion.get("settings") != self.settings:
            return "complete.json was written for other settings"
        manifest = folder / "manifest.csv"
        if not manifest.is_file() or _file_sha256(manifest) != completion.get("manifest_sha256"):
            return "manifest.csv is missing or differs from the one recorded as complete"
        for row in self._manifest_rows(folder):
            image = folder / row["image"]
            if not image.is_file() or image.stat().st_size != int(row["bytes"]):
                return f"{row['image']} is missing or has a different size than recorded"
        return None

    @staticmethod
    def _manifest_rows(folder: Path) -> list[dict[str, str]]:
        with open(folder / "manifest.csv", newline="") as handle:
            return list(csv.DictReader(handle))

    def _build(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self._remove_stale_partials()
        partial = self.root / f".partial-{self.cache_key}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        started = time.perf_counter()
        try:
            rows = self._generate(partial)
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise
        fields = [
            "image",
            "reference",
            "distortion",
            "distortion_type",
            "level",
            self.quality_measure,
            "score",
            "bytes",
        ]
        with open(partial / "manifest.csv", "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=fields)
            writer.writeheader()
            writer.writerows(rows)
        completion = {"settings": self.settings, "manifest_sha256": _file_sha256(partial / "manifest.csv")}
        (partial / "complete.json").write_text(json.dumps(completion, indent=2))
        self._move_into_place(partial)
        log.info(
            "built %d synthetic images in %.1f s at %s",
            len(rows),
            time.perf_counter() - started,
            self.cache_dir,
        )

    def _generate(self, folder: Path) -> list[dict[str, object]]:
        references = cut_references(self.image_size, self.num_references)
        per_reference = len(self.distortions) * self.levels
        total = len(references) * per_reference
        # Starting a worker costs about a second of imports: small builds are faster in this process.
        workers = self.workers or max(1, min(_available_cpus(), total // _IMAGES_PER_WORKER))
        workers = min(workers, len(references))
        rows: list[dict[str, object]] = []
        with (
            tqdm(total=total, desc="synthetic IQA", unit="img") as progress,
            _parallel_map(workers) as parallel_map,
        ):
            for reference_rows in parallel_map(
                self._distort_reference, references, [folder] * len(references)
            ):
                rows += reference_rows
                progress.update(per_reference)
        return rows

    def _distort_reference(self, reference: Reference, folder: Path) -> list[dict[str, object]]:
        """Writes every distorted version of one reference into `folder`; returns their manifest rows."""
        (folder / "images" / reference.name).mkdir(parents=True)
        measure = MEASURES[self.quality_measure](reference.pixels)
        rows: list[dict[str, object]] = []
        for type_index, name in enumerate(self.distortions):
            for level in range(1, self.levels + 1):
                rng = np.random.default_rng(_image_seed(self.seed, reference.name, name, level))
                image = distort(reference.pixels, name, level, rng)
                if np.array_equal(image, reference.pixels):
                    continue
                relative = f"images/{reference.name}/{name}_{level}.png"
                encoded = _png_bytes(image)
                (folder / relative).write_bytes(encoded)
                quality = measure(image)
                rows.append(
                    {
                        "image": relative,
                        "reference": reference.name,
                        "distortion": name,
                        "distortion_type": type_index,
                        "level": level,
                        self.quality_measure: f"{quality:.6f}",
                        "score": f"{min(max(quality, 0.0), 1.0):.6f}",
                        "bytes": len(encoded),
                    }
                )
        return rows

    def _move_into_place(self, partial: Path) -> None:
        if self.cache_dir.exists():
            if self._cache_problem(self.cache_dir) is None:
                # Another process finished the same build first; its cache is as good as ours.
                shutil.rmtree(partial)
                return
            shutil.rmtree(self.cache_dir)
        try:
            partial.rename(self.cache_dir)
        except OSError:
            if self._cache_problem(self.cache_dir) is not None:
                raise
            shutil.rmtree(partial)

    def _remove_stale_partials(self) -> None:
        """Remove what killed builds left behind; recent ones may belong to a build still running elsewhere."""
        for leftover in self.root.glob(f".partial-{self.cache_key}-*"):
            if time.time() - leftover.stat().st_mtime > _STALE_PARTIAL_S:
                shutil.rmtree(leftover, ignore_errors=True)

    def _records(self, folder: Path) -> DatasetRecords:
        records = [
            ImageRecord(
                path=folder / row["image"],
                score=float(row["score"]),
                raw_score=float(row["score"]),
                image_id=row["image"],
                reference_id=row["reference"],
                distortion_type=int(row["distortion_type"]),
                distortion_level=int(row["level"]),
            )
            for row in self._manifest_rows(folder)
        ]
        return DatasetRecords(
            name="synthetic",
            root=folder,
            records=records,
            scale=ScoreScale(low=0.0, high=1.0, higher_is_better=True, name=self.quality_measure.upper()),
            distortion_types=list(self.distortions),
        )
