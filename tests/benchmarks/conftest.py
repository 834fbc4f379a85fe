"""Helpers for the benchmark scripts' smoke tests: load a script as a module, write a tiny BIQ2021 folder."""

from pathlib import Path
from types import ModuleType

import numpy as np
from PIL import Image
from tests.conftest import load_script

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def load_benchmark(name: str) -> ModuleType:
    return load_script(BENCHMARKS / f"{name}.py", name)


def write_biq2021_folder(root: Path, images: int) -> Path:
    """`images` random 40x48 JPEGs under root/Images and the training CSV in BIQ2021's layout."""
    rng = np.random.default_rng(0)
    (root / "Images").mkdir(parents=True)
    rows = []
    for i in range(images):
        name = f"ss01 ({i}).jpg"
        Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(root / "Images" / name)
        rows.append(f"{name},{rng.random():.3f},,\n")
    (root / "Train (Images and MOS).csv").write_text("Image Name,MOS,,\n" + "".join(rows))
    return root
