"""Helpers for the BIQ2021 experiment scripts' tests: load a script, write a study's seeded split folders."""

import json
from pathlib import Path
from types import ModuleType

import torch
from tests.conftest import load_script

FOLDER = Path(__file__).resolve().parents[3] / "experiments" / "biq2021"


def load_experiment(name: str) -> ModuleType:
    return load_script(FOLDER / f"{name}.py", f"biq2021_{name}")


def write_splits(folder: Path, ids: list[str], seeds: tuple[int, ...], train: int, val: int) -> Path:
    """folder/seed=K/split.json as a study writes them: `train` and `val` photos of `ids` drawn with seed K,
    the rest for test."""
    for seed in seeds:
        order = torch.randperm(len(ids), generator=torch.Generator().manual_seed(seed)).tolist()
        parts = {"train": order[:train], "val": order[train:train + val], "test": order[train + val:]}
        (folder / f"seed={seed}").mkdir(parents=True)
        (folder / f"seed={seed}" / "split.json").write_text(
            json.dumps({name: [ids[i] for i in rows] for name, rows in parts.items()}))
    return folder
