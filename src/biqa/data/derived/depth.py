"""Depth maps for depth-guided models (DGIQA): where they come from, and the cache that computes each once.

Every provider answers the same two calls:
  - `prepare(records)` makes every map available before training (the datamodule calls it in `setup`, in the
    main process); computing providers write each map to an on-disk cache as soon as it is done, so maps are
    reused across epochs, runs and sweeps, and an interrupted `prepare` resumes where it stopped;
  - `load(record)` returns the map as uint8 (H, W) at the image's (EXIF-oriented) size, min-max normalised
    per image to 0-255, bright = near (relative inverse depth, as Depth Anything gives it).
`name` says where the maps came from; every run records it.

Providers: `DepthAnythingProvider` (learned depth, the paper's), `FolderDepthProvider` (maps computed
elsewhere) and `NotLearnedDepthFallback` (an offline sharpness proxy that is *not* depth, for runs on
machines without the estimator's weights).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
from PIL import Image
from scipy import ndimage
from tqdm import tqdm

from biqa.data.datasets.records import ImageRecord
from biqa.data.loading.crops import load_rgb, unit_range

log = logging.getLogger(__name__)

_EXIF_ORIENTATION = 0x0112
_TRANSPOSED_ORIENTATIONS = (5, 6, 7, 8)


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) as `load_rgb` shows the image (EXIF rotation applied), read from the header only."""
    with Image.open(path) as image:
        width, height = image.size
        if image.getexif().get(_EXIF_ORIENTATION) in _TRANSPOSED_ORIENTATIONS:
            return height, width
        return width, height


def to_uint8(depth: np.ndarray) -> np.ndarray:
    """Per-image min-max normalisation to 0-255; a constant map becomes all zeros."""
    depth = depth.astype(np.float64)
    low, high = float(depth.min()), float(depth.max())
    if not math.isfinite(low) or not math.isfinite(high):
        raise ValueError("depth map has non-finite values")
    if high <= low:
        return np.zeros(depth.shape, dtype=np.uint8)
    return np.round((depth - low) * (255.0 / (high - low))).astype(np.uint8)


def resize_float(depth: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of a float map to (width, height)."""
    if depth.shape[::-1] == tuple(size):
        return depth
    return np.asarray(Image.fromarray(depth.astype(np.float32)).resize(size, Image.BILINEAR))


class DepthProvider(ABC):
    name: str

    @abstractmethod
    def prepare(self, records: Sequence[ImageRecord]) -> None: ...

    @abstractmethod
    def load(self, record: ImageRecord) -> np.ndarray: ...


def no_depth_provider() -> None:
    """What `data/depth=none` instantiates to: no provider, so the datamodule supplies no depth."""
    return None


class DepthMapCache:
    """uint8 PNG maps under `root/<provider>-<settings hash>/`, one per image path, size and mtime.

    A changed image (new size or mtime) gets a new entry, so stale maps are never served. Writes go to a
    temporary file first and are renamed into place, so an interrupted or concurrent run never leaves a
    half-written map behind.
    """

    def __init__(self, root: str | Path, provider: str, settings: dict[str, Any]) -> None:
        settings_json = json.dumps(settings, sort_keys=True)
        digest = hashlib.sha1(settings_json.encode()).hexdigest()[:12]
        self.folder = Path(root) / f"{provider}-{digest}"
        self.settings_json = settings_json

    def path_for(self, image_path: Path) -> Path:
        stat = Path(image_path).stat()
        key = f"{Path(image_path).resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
        digest = hashlib.sha1(key.encode()).hexdigest()
        return self.folder / digest[:2] / f"{digest}.png"

    def read(self, image_path: Path) -> np.ndarray | None:
        path = self.path_for(image_path)
        if not path.exists():
            return None
        with Image.open(path) as stored:
            return np.asarray(stored.convert("L"))

    def write(self, image_path: Path, depth: np.ndarray) -> None:
        path = self.path_for(image_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        settings_file = self.folder / "settings.json"
        if not settings_file.exists():
            settings_file.write_text(self.settings_json + "\n")
        handle, temporary = tempfile.mkstemp(dir=path.parent, suffix=".png.tmp")
        try:
            with os.fdopen(handle, "wb") as stream:
                Image.fromarray(depth).save(stream, format="PNG")
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise


class CachedDepthProvider(DepthProvider):
    """A provider that computes maps itself: `prepare` fills the cache, `load` reads it.

    Subclasses give `settings` (everything that changes the maps; it keys the cache) and `estimate`.
    """

    def __init__(self, cache_dir: str | Path, batch_size: int) -> None:
        self.cache = DepthMapCache(cache_dir, type(self).__name__, self.settings)
        self.batch_size = batch_size

    @property
    @abstractmethod
    def settings(self) -> dict[str, Any]: ...

    @abstractmethod
    def estimate(self, images: list[Image.Image]) -> list[np.ndarray]:
        """Float maps (H, W) at each image's size, larger = nearer; any scale (normalised afterwards)."""

    def prepare(self, records: Sequence[ImageRecord]) -> None:
        paths = list(dict.fromkeys(Path(r.path) for r in records))
        missing = [p for p in paths if not self.cache.path_for(p).exists()]
        log.info("depth maps (%s): %d of %d cached in %s", self.name, len(paths) - len(missing), len(paths),
                 self.cache.folder)
        if not missing:
            return
        # Same-size images next to each other, so batches stack without padding.
        missing.sort(key=image_size)
        with tqdm(total=len(missing), desc=f"depth maps ({self.name})", unit="map") as progress:
            for start in range(0, len(missing), self.batch_size):
                batch = missing[start : start + self.batch_size]
                for path, depth in zip(batch, self.estimate([load_rgb(p) for p in batch]), strict=True):
                    self.cache.write(path, to_uint8(depth))
                progress.update(len(batch))

    def load(self, record: ImageRecord) -> np.ndarray:
        depth = self.cache.read(Path(record.path))
        if depth is None:
            raise FileNotFoundError(
                f"no cached depth map for {record.path} in {self.cache.folder} (provider {self.name}); "
                "call prepare(records) first (the datamodule does in setup), and re-run it if the image changed"
            )
        return depth


def depth_anything_input_size(
    height: int, width: int, min_short_side: int = 518, multiple_of: int = 14
) -> tuple[int, int]:
    """(height, width) for Depth Anything: aspect kept, short side at `min_short_side`, both sides multiples
    of `multiple_of` and never below `min_short_side` (the "lower bound" resize of the Depth Anything code)."""
    scale = min_short_side / min(height, width)

    def fit(side: int) -> int:
        scaled = side * scale
        rounded = round(scaled / multiple_of) * multiple_of
        return rounded if rounded >= min_short_side else math.ceil(scaled / multiple_of) * multiple_of

    return fit(height), fit(width)


class DepthAnythingProvider(CachedDepthProvider):
    """Depth Anything through `transformers` (`AutoModelForDepthEstimation` + `AutoImageProcessor`).

    `model` is a hub id (DGIQA's code uses Depth Anything v1; `LiheYoung/depth-anything-{small,base,large}-hf`)
    or a local folder holding a `save_pretrained` copy (for machines without internet). The model is only
    loaded when some map is missing, so a warm cache needs neither the weights nor the hub.
    Each image is resized (bicubic) to `depth_anything_input_size`, normalised with the processor's mean and
    std; the predicted relative inverse depth is upsampled (bilinear) to the image's size.
    """

    def __init__(
        self,
        model: str = "LiheYoung/depth-anything-large-hf",
        cache_dir: str | Path = ".cache/depth",
        device: str = "auto",
        batch_size: int = 4,
        min_short_side: int = 518,
        multiple_of: int = 14,
        local_files_only: bool = False,
    ) -> None:
        self.model = str(model)
        self.device = device
        self.min_short_side = min_short_side
        self.multiple_of = multiple_of
        self.local_files_only = local_files_only
        self.name = f"depth_anything:{self.model}"
        self._loaded: tuple[Any, Any, Any] | None = None
        super().__init__(cache_dir, batch_size)

    @property
    def settings(self) -> dict[str, Any]:
        return {
            "model": self._model_fingerprint(),
            "min_short_side": self.min_short_side,
            "multiple_of": self.multiple_of,
            "input_resize": "bicubic",
            "output_resize": "bilinear",
        }

    def prepare(self, records: Sequence[ImageRecord]) -> None:
        try:
            super().prepare(records)
        finally:
            # Only `prepare` needs the network: drop it so it neither holds GPU memory during training nor
            # travels to data-loader workers with the provider.
            if self._loaded is not None:
                self._loaded = None
                import torch

                if torch.cuda.is_available():
                    torch.cuda.empty_cache()

    def _model_fingerprint(self) -> str:
        """The hub id, or for a local folder its path plus the size and mtime of every file in it, so
        replacing the weights in place does not serve maps from the old ones."""
        folder = Path(self.model)
        if not folder.is_dir():
            return self.model
        files = sorted(p for p in folder.rglob("*") if p.is_file())
        stamp = "|".join(f"{p.relative_to(folder)}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in files)
        return f"{folder.resolve()}#{hashlib.sha1(stamp.encode()).hexdigest()[:12]}"

    def _load_model(self) -> tuple[Any, Any, Any]:
        if self._loaded is not None:
            return self._loaded
        import torch

        try:
            from transformers import AutoImageProcessor, AutoModelForDepthEstimation
        except ImportError as error:
            raise ImportError(
                "DepthAnythingProvider needs `transformers` (pip install 'biqa[depth]')"
            ) from error
        try:
            processor = AutoImageProcessor.from_pretrained(self.model, local_files_only=self.local_files_only)
            network = AutoModelForDepthEstimation.from_pretrained(self.model, local_files_only=self.local_files_only)
        except OSError as error:
            raise RuntimeError(
                f"could not load the Depth Anything model {self.model!r}: the Hugging Face hub is unreachable "
                "(offline machine?) or the name/folder is wrong. Ways out:\n"
                f"  - on a machine with internet: `hf download {self.model} --local-dir DIR` (or "
                "`from_pretrained(...).save_pretrained(DIR)` for the model and its image processor), copy DIR "
                "here and pass data.depth.model=DIR;\n"
                "  - precomputed maps: data/depth=folder data.depth.root=MAPS_DIR;\n"
                "  - no learned depth at all: data/depth=not_learned_blur_proxy (a sharpness proxy, NOT depth).\n"
                f"Original error: {error}"
            ) from error
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu") if self.device == "auto" else (
            torch.device(self.device)
        )
        network = network.to(device).eval()
        mean = torch.tensor(processor.image_mean, dtype=torch.float32, device=device).view(1, 3, 1, 1)
        std = torch.tensor(processor.image_std, dtype=torch.float32, device=device).view(1, 3, 1, 1)
        self._loaded = network, (mean, std), device
        return self._loaded

    def estimate(self, images: list[Image.Image]) -> list[np.ndarray]:
        import torch
        import torch.nn.functional as F

        network, (mean, std), device = self._load_model()
        groups: dict[tuple[int, int], list[int]] = {}
        for index, image in enumerate(images):
            size = depth_anything_input_size(image.height, image.width, self.min_short_side, self.multiple_of)
            groups.setdefault(size, []).append(index)
        maps: list[np.ndarray] = [np.empty(0)] * len(images)
        for (height, width), indices in groups.items():
            pixels = np.stack([np.asarray(images[i].resize((width, height), Image.BICUBIC)) for i in indices])
            batch = unit_range(torch.from_numpy(pixels).to(device).permute(0, 3, 1, 2))
            with torch.inference_mode():
                predicted = network(pixel_values=(batch - mean) / std).predicted_depth
            for row, index in enumerate(indices):
                full_size = (images[index].height, images[index].width)
                upsampled = F.interpolate(predicted[row][None, None].float(), size=full_size, mode="bilinear",
                                          align_corners=False)
                maps[index] = upsampled[0, 0].cpu().numpy()
        return maps


class NotLearnedDepthFallback(CachedDepthProvider):
    """NOT learned depth: a cheap, deterministic stand-in for machines without a depth estimator.

    The map is local sharpness (a defocus cue: smoothed absolute Laplacian of the luminance, computed with
    the long side at `working_size` px), blended with a bottom-is-near position prior by `vertical_prior`.
    In focus-on-subject photos this puts the subject and the foreground bright, roughly as relative inverse
    depth would, but it is a blur map, and blur is itself a distortion, so results with it say nothing about
    depth guidance. Use it to run the pipeline, not to report DGIQA.
    """

    def __init__(
        self,
        cache_dir: str | Path = ".cache/depth",
        working_size: int = 256,
        blur_sigma: float = 4.0,
        vertical_prior: float = 0.3,
        batch_size: int = 16,
    ) -> None:
        if not 0.0 <= vertical_prior <= 1.0:
            raise ValueError(f"vertical_prior must lie in [0, 1], got {vertical_prior}")
        self.working_size = working_size
        self.blur_sigma = blur_sigma
        self.vertical_prior = vertical_prior
        self.name = "not_learned:blur_proxy"
        super().__init__(cache_dir, batch_size)

    @property
    def settings(self) -> dict[str, Any]:
        return {
            "working_size": self.working_size,
            "blur_sigma": self.blur_sigma,
            "vertical_prior": self.vertical_prior,
        }

    def estimate(self, images: list[Image.Image]) -> list[np.ndarray]:
        return [self._proxy(image) for image in images]

    def _proxy(self, image: Image.Image) -> np.ndarray:
        scale = min(1.0, self.working_size / max(image.size))
        small_size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        luminance = np.asarray(image.convert("L").resize(small_size, Image.BILINEAR), dtype=np.float32) / 255
        sharpness = ndimage.gaussian_filter(np.abs(ndimage.laplace(luminance)), self.blur_sigma)
        sharpness = sharpness / max(float(sharpness.max()), 1e-8)
        rows = np.linspace(0.0, 1.0, luminance.shape[0], dtype=np.float32)[:, None]
        proxy = (1 - self.vertical_prior) * sharpness + self.vertical_prior * rows
        return resize_float(proxy, image.size)


class FolderDepthProvider(DepthProvider):
    """Maps computed elsewhere, one file per image under `root`: PNG (8 or 16 bit, grey or RGB) or NPY.

    `pattern` names a map from its image: fields `{stem}` (file name without extension), `{name}` (file
    name), `{image_id}` (the record's id, a path relative to the dataset root) and `{image_id_stem}` (that id
    without extension), e.g. `{stem}.png` or `{image_id_stem}_depth.npy`. Maps are resized to the image if
    needed and min-max normalised per image; `invert` turns metric depth (near = small) into the bright =
    near convention of relative inverse depth.
    """

    def __init__(self, root: str | Path, pattern: str = "{stem}.png", invert: bool = False) -> None:
        self.root = Path(root)
        self.pattern = pattern
        self.invert = invert
        self.name = f"folder:{self.root}/{pattern}" + (" (inverted)" if invert else "")

    def map_path(self, record: ImageRecord) -> Path:
        image_path = Path(record.path)
        image_id = PurePosixPath(record.image_id)
        return self.root / self.pattern.format(
            stem=image_path.stem,
            name=image_path.name,
            image_id=str(image_id),
            image_id_stem=str(image_id.with_suffix("")),
        )

    def prepare(self, records: Sequence[ImageRecord]) -> None:
        missing = [self.map_path(r) for r in records if not self.map_path(r).exists()]
        if missing:
            shown = "\n  ".join(str(p) for p in missing[:20])
            more = f"\n  ... and {len(missing) - 20} more" if len(missing) > 20 else ""
            raise FileNotFoundError(
                f"{len(missing)} of {len(records)} depth maps are missing under {self.root} "
                f"(pattern {self.pattern!r}):\n  {shown}{more}"
            )
        log.info("depth maps (%s): all %d present", self.name, len(records))

    def load(self, record: ImageRecord) -> np.ndarray:
        path = self.map_path(record)
        if path.suffix.lower() == ".npy":
            depth = np.load(path).astype(np.float32)
        else:
            with Image.open(path) as stored:
                depth = np.asarray(stored, dtype=np.float32)
        if depth.ndim == 3:
            depth = depth[..., 0]
        if depth.ndim != 2:
            raise ValueError(f"{path}: expected an (H, W) depth map, got shape {depth.shape}")
        depth = resize_float(depth, image_size(Path(record.path)))
        return to_uint8(-depth if self.invert else depth)
