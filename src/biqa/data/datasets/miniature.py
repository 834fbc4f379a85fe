"""Miniature stand-ins of the real datasets, written in each dataset's own distributed layout.

`debug=rehearsal` trains a paper's recipe end to end on one of these (biqa.engine), so that the reader,
validation, split, crops and depth of the real dataset run before a cluster job does; the reader tests
build their layouts with the same writers. Each writer fills `root` with a handful of small images and
the score files exactly as their owners distribute them (names, columns, .mat/.xlsx containers), scores
spread over the dataset's range.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image


def write_image(path: Path, size: tuple[int, int], rng: np.random.Generator) -> Path:
    """A smooth random colour field of (width, height), in the format the suffix names."""
    path.parent.mkdir(parents=True, exist_ok=True)
    coarse = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
    Image.fromarray(coarse).resize(size, Image.BILINEAR).save(path)
    return path


def _scores(rng: np.random.Generator, count: int, low: float, high: float) -> np.ndarray:
    return np.round(rng.uniform(low, high, count), 4)


def _cells(names: list[str], shape: tuple[int, int]) -> np.ndarray:
    cells = np.empty(shape, dtype=object)
    cells.flat[:] = names
    return cells


def write_koniq10k(root: Path, images: int, rng: np.random.Generator, size=(320, 240)) -> None:
    names = [f"{1000000 + i}.jpg" for i in range(images)]
    scores = _scores(rng, images, 5, 95)
    header = "image_name,c1,c2,c3,c4,c5,c_total,MOS,SD,MOS_zscore"
    rows = [f"{n},1,2,3,4,5,15,{1 + z / 25:.4f},0.5,{z}" for n, z in zip(names, scores, strict=True)]
    (root / "koniq10k_scores_and_distributions.csv").write_text("\n".join([header, *rows]) + "\n")
    sets = ["training", "validation", "test"]
    (root / "koniq10k_distributions_sets.csv").write_text("\n".join(
        [f"{header},set", *(f"{row},{sets[i % 3]}" for i, row in enumerate(rows))]) + "\n")
    for name in names:
        for folder in ("512x384", "1024x768"):
            write_image(root / folder / name, size, rng)


def write_livec(root: Path, images: int, rng: np.random.Generator, size=(250, 250)) -> None:
    from scipy.io import savemat

    # The first 7 entries are the original study's training images, dropped by every reader.
    names = [f"t{i}.bmp" for i in range(7)] + [f"{10 + i}.JPG" for i in range(images)]
    (root / "Data").mkdir(parents=True, exist_ok=True)
    savemat(root / "Data" / "AllImages_release.mat", {"AllImages_release": _cells(names, (len(names), 1))})
    savemat(root / "Data" / "AllMOS_release.mat", {"AllMOS_release": _scores(rng, len(names), 5, 95)[None]})
    savemat(root / "Data" / "AllStdDev_release.mat", {"AllStdDev_release": np.ones((1, len(names)))})
    for name in names:
        write_image(root / "Images" / name, size, rng)


def _distorted(images: int, types: int) -> tuple[int, list[tuple[int, int, int]]]:
    """`images` (reference, type, level) triples, 1-based, over a quarter as many references."""
    references = max(2, images // 4)
    return references, [(i % references + 1, i // references % types + 1, i % 5 + 1) for i in range(images)]


def write_kadid10k(root: Path, images: int, rng: np.random.Generator, size=(256, 192)) -> None:
    references, triples = _distorted(images, types=25)
    rows = []
    for reference, kind, level in triples:
        name = f"I{reference:02d}_{kind:02d}_{level:02d}.png"
        rows.append(f"{name},I{reference:02d}.png,{rng.uniform(1, 5):.3f},0.5")
        write_image(root / "images" / name, size, rng)
    for reference in range(1, references + 1):
        write_image(root / "images" / f"I{reference:02d}.png", size, rng)
    (root / "dmos.csv").write_text("dist_img,ref_img,dmos,var\n" + "\n".join(rows) + "\n")


def write_tid2013(root: Path, images: int, rng: np.random.Generator, size=(256, 192)) -> None:
    references, triples = _distorted(images, types=24)
    lines = []
    for reference, kind, level in triples:
        name = f"i{reference:02d}_{kind:02d}_{level}.bmp"
        lines.append(f"{rng.uniform(0, 9):.5f} {name}")
        write_image(root / "distorted_images" / name, size, rng)
    for reference in range(1, references + 1):
        write_image(root / "reference_images" / f"I{reference:02d}.BMP", size, rng)
    (root / "mos_with_names.txt").write_text("\n".join(lines) + "\n")
    (root / "mos_std.txt").write_text("\n".join("0.1" for _ in lines) + "\n")


def write_csiq(root: Path, images: int, rng: np.random.Generator, size=(256, 256)) -> None:
    from openpyxl import Workbook

    from biqa.data.datasets.readers.csiq import DISTORTION_TYPES, TYPE_OF_LABEL

    labels = ["noise", "jpeg", "jpeg 2000", "fnoise", "blur", "contrast"]
    references = [f"ref{i}" for i in range(max(2, images // 4))]
    # As released: a title above the header, and the table starting in the second column.
    workbook = Workbook()
    sheet = workbook.active
    sheet.title = "all_by_image"
    sheet["B1"] = "CSIQ DMOS"
    sheet.append([None, "image", "dst_idx", "dst_type", "dst_lev", "dmos_std", "dmos"])
    for index in range(images):
        image, label, level = references[index % len(references)], labels[index % 6], index % 5 + 1
        kind, tag = TYPE_OF_LABEL[label]
        sheet.append([None, image, kind + 1, label, level, 0.01, round(float(rng.uniform(0, 1)), 4)])
        write_image(root / "dst_imgs" / DISTORTION_TYPES[kind] / f"{image}.{tag}.{level}.png", size, rng)
    workbook.save(root / "csiq.DMOS.xlsx")
    for image in references:
        write_image(root / "src_imgs" / f"{image}.png", size, rng)


def write_live(root: Path, images: int, rng: np.random.Generator, size=(256, 192)) -> None:
    """Release 2's .mat files list all 982 entries; here only the first few of each folder are distorted
    images (`orgs` 0) and written, the rest are marked as reference copies (`orgs` 1), which readers drop."""
    from scipy.io import savemat

    from biqa.data.datasets.readers.live import FOLDERS

    entries = sum(count for _, count in FOLDERS)
    per_folder = max(2, images // len(FOLDERS))
    originals, start = np.ones((1, entries)), 0
    for folder, count in FOLDERS:
        originals[0, start:start + per_folder] = 0
        for number in range(1, per_folder + 1):
            write_image(root / folder / f"img{number}.bmp", size, rng)
        (root / folder).mkdir(parents=True, exist_ok=True)
        start += count
    dmos = _scores(rng, entries, 0, 100)[None]
    savemat(root / "dmos.mat", {"dmos": dmos, "orgs": originals})
    savemat(root / "dmos_realigned.mat", {"dmos_new": dmos, "orgs": originals, "dmos_std": np.ones((1, entries))})
    references = [f"ref{i % max(2, images // 4)}.bmp" for i in range(entries)]
    savemat(root / "refnames_all.mat", {"refnames_all": _cells(references, (1, entries))})
    for name in sorted(set(references)):
        write_image(root / "refimgs" / name, size, rng)


def write_spaq(root: Path, images: int, rng: np.random.Generator, size=(400, 300)) -> None:
    import pandas as pd

    names = [f"{i + 1:05d}.jpg" for i in range(images)]
    table = pd.DataFrame({"Image name": names, "MOS": _scores(rng, images, 5, 95)})
    for attribute in ("Brightness", "Colorfulness", "Contrast", "Noisiness", "Sharpness"):
        table[attribute] = 50.0
    (root / "Annotations").mkdir(parents=True, exist_ok=True)
    table.to_excel(root / "Annotations" / "MOS and Image attribute scores.xlsx", index=False)
    for name in names:
        write_image(root / "TestImage" / name, size, rng)


def write_flive(root: Path, images: int, rng: np.random.Generator, size=(320, 240)) -> None:
    folders = ["voc_emotic_ava", "EE371R", "blur_dataset", "AVA__"]
    names = [f"{folders[i % 4]}/{i}.jpg" if i % 4 < 3 else f"AVA__{i}.jpg" for i in range(images)]
    scores = _scores(rng, images, 20, 90)
    (root / "labels_image.csv").write_text(
        "name,mos\n" + "".join(f"{n},{s}\n" for n, s in zip(names, scores, strict=True)))
    tests = names[: max(1, images // 5)]
    (root / "labels640.csv").write_text("name_image,mos_image\n" + "".join(f"{n},50.0\n" for n in tests))
    for name in names:
        write_image(root / name, size, rng)


def write_biq2021(root: Path, images: int, rng: np.random.Generator, size=(256, 256)) -> None:
    names = [f"ss{i:02d} ({i}).jpg" for i in range(images)]
    scores = _scores(rng, images, 0, 1)
    test = max(1, images // 5)
    for file, part in (("Train (Images and MOS).csv", slice(test, None)), ("Test (Images and MOS).csv", slice(test))):
        (root / file).write_text("Image Name,MOS\n" + "".join(
            f"{n},{s}\n" for n, s in zip(names[part], scores[part], strict=True)))
    for name in names:
        write_image(root / "Images" / name, size, rng)


WRITERS: dict[str, Callable[[Path, int, np.random.Generator], None]] = {
    "biqa.data.datasets.readers.koniq10k.KonIQ10k": write_koniq10k,
    "biqa.data.datasets.readers.livec.LIVEChallenge": write_livec,
    "biqa.data.datasets.readers.kadid10k.KADID10k": write_kadid10k,
    "biqa.data.datasets.readers.tid2013.TID2013": write_tid2013,
    "biqa.data.datasets.readers.csiq.CSIQ": write_csiq,
    "biqa.data.datasets.readers.live.LIVE": write_live,
    "biqa.data.datasets.readers.spaq.SPAQ": write_spaq,
    "biqa.data.datasets.readers.flive.FLIVE": write_flive,
    "biqa.data.datasets.readers.biq2021.BIQ2021": write_biq2021,
}
"""Reader class (a dataset config's `_target_`) -> the writer of its miniature layout."""


def write_miniature(reader: str, root: str | Path, images: int = 16, seed: int = 0) -> Path:
    """Writes the miniature of `reader`'s dataset into `root` (once: an existing complete one is kept)."""
    if reader not in WRITERS:
        raise ValueError(f"no miniature layout for reader {reader}; known: {', '.join(sorted(WRITERS))}")
    root = Path(root)
    done = root / ".miniature_complete"
    if not done.exists():
        root.mkdir(parents=True, exist_ok=True)
        WRITERS[reader](root, images, np.random.default_rng(seed))
        done.write_text(f"{reader} {images} {seed}\n")
    return root
