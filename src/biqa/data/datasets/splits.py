"""The evaluation protocol's splits: seeded train/val/test, by reference image where there is one.

Random splits hold out `test_fraction` of the images (of the references, on synthetic datasets) and carve a
validation part out of the training part; the checkpoint is selected on validation, never on test. The
official split of a dataset (KonIQ-10k, BIQ2021, FLIVE) is used with `strategy: official`;
`official_or_random` uses it where the dataset's files define a test part and a seeded random split
otherwise (BIQ2021 without its `Test (Images and MOS).csv`). N seeded splits are N runs with `seed=0..N-1`.
Cross-dataset runs (`data.test_dataset`, see `biqa.data.datasets.cross_dataset`) are an official split whose train
part is all of dataset A and whose test part is all of dataset B.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from biqa.data.datasets.records import DatasetRecords

log = logging.getLogger(__name__)

STRATEGIES = ("random", "official", "all", "official_or_random")


@dataclass
class Split:
    train: list[int]
    val: list[int]
    test: list[int]

    def save(self, path: Path, records: DatasetRecords) -> None:
        names = {part: [records.records[i].image_id for i in idx] for part, idx in asdict(self).items()}
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(names, indent=1))


def make_split(
    records: DatasetRecords,
    seed: int = 0,
    strategy: str = "random",
    test_fraction: float = 0.2,
    val_fraction: float = 0.1,
    train_fraction: float = 1.0,
) -> Split:
    """`val_fraction` is a fraction of the training part; `train_fraction` keeps that fraction of what is
    left for training (the papers' training-data-size ablation)."""
    if strategy not in STRATEGIES:
        raise ValueError(f"data.split.strategy '{strategy}' is unknown; choose one of {', '.join(STRATEGIES)}")
    rng = np.random.default_rng(seed)
    groups = _groups(records)
    if strategy == "official_or_random":
        strategy = "official" if "test" in records.official_splits else "random"
        log.info("%s: %s split (official_or_random)", records.name,
                 "official" if strategy == "official" else f"no official test part; seeded random (seed {seed})")
    if strategy == "all":
        every = list(range(len(records)))
        return Split(train=every, val=every, test=every)
    if strategy == "official":
        train, test = _official(records)
        if "val" in records.official_splits:
            return Split(sorted(train), sorted(records.official_splits["val"]), sorted(test))
    else:
        shuffled = rng.permutation(len(groups))
        n_test = max(1, round(test_fraction * len(groups)))
        test = [i for g in shuffled[:n_test] for i in groups[g]]
        train = [i for g in shuffled[n_test:] for i in groups[g]]
    train, val = _carve(records, train, val_fraction, rng)
    if train_fraction < 1.0:
        train, _ = _carve(records, train, 1.0 - train_fraction, rng)
    return Split(sorted(train), sorted(val), sorted(test))


def _groups(records: DatasetRecords) -> list[list[int]]:
    """Indices grouped by reference image; one group per image where the dataset has no references."""
    by_key: dict[str, list[int]] = {}
    for i, record in enumerate(records.records):
        by_key.setdefault(record.reference_id if record.reference_id is not None else f"#{i}", []).append(i)
    return list(by_key.values())


def _carve(records: DatasetRecords, indices: list[int], fraction: float, rng: np.random.Generator):
    """Split `indices` into (kept, carved), carving `fraction` of their reference groups."""
    if fraction <= 0:
        return indices, []
    subset = DatasetRecords(records.name, records.root, [records.records[i] for i in indices], records.scale)
    groups = _groups(subset)
    n_carved = max(1, round(fraction * len(groups)))
    if n_carved >= len(groups):
        raise ValueError(
            f"cannot carve {fraction:.0%} of {len(groups)} images/references and keep any for training: "
            "lower data.split.val_fraction or use a larger dataset"
        )
    order = rng.permutation(len(groups))
    carved = [indices[j] for g in order[:n_carved] for j in groups[g]]
    kept = [indices[j] for g in order[n_carved:] for j in groups[g]]
    return kept, carved


def _official(records: DatasetRecords) -> tuple[list[int], list[int]]:
    splits = records.official_splits
    if "train" not in splits or "test" not in splits:
        have = ", ".join(sorted(splits)) or "none"
        raise ValueError(
            f"dataset '{records.name}' at {records.root} has no official train/test split (found: {have}); "
            "use data.split.strategy=random or official_or_random"
        )
    return list(splits["train"]), list(splits["test"])
