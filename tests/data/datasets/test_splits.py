from pathlib import Path

import pytest

from biqa.data.datasets.records import DatasetRecords, ImageRecord, ScoreScale
from biqa.data.datasets.splits import make_split


def records(n_refs: int = 20, per_ref: int = 5, with_refs: bool = True) -> DatasetRecords:
    items = [
        ImageRecord(Path(f"{r}_{d}.png"), 0.5, 0.5, f"{r}_{d}.png", reference_id=f"ref{r}" if with_refs else None)
        for r in range(n_refs) for d in range(per_ref)
    ]
    return DatasetRecords("toy", Path("."), items, ScoreScale(0, 1),
                          official_splits={"train": list(range(0, 60)), "test": list(range(60, 100))})


def test_no_reference_crosses_train_val_test():
    data = records()
    for seed in range(5):
        split = make_split(data, seed=seed)
        refs = {part: {data.records[i].reference_id for i in getattr(split, part)} for part in ("train", "val", "test")}
        assert not refs["train"] & refs["test"]
        assert not refs["train"] & refs["val"]
        assert not refs["val"] & refs["test"]
        assert len(split.train) + len(split.val) + len(split.test) == len(data)


def test_random_split_fractions_and_seeds():
    data = records(with_refs=False)
    a, b, c = make_split(data, seed=0), make_split(data, seed=0), make_split(data, seed=1)
    assert a == b
    assert a.test != c.test
    assert len(a.test) == 20
    assert len(a.val) == 8


def test_official_split_keeps_the_official_test_part():
    split = make_split(records(with_refs=False), strategy="official", seed=3)
    assert split.test == list(range(60, 100))
    assert set(split.train) | set(split.val) == set(range(60))


def test_official_split_missing_names_the_fix():
    data = records()
    data.official_splits = {}
    with pytest.raises(ValueError, match="strategy=random"):
        make_split(data, strategy="official")


def test_train_fraction_shrinks_only_training():
    full, fifth = make_split(records(), seed=0), make_split(records(), seed=0, train_fraction=0.2)
    assert fifth.test == full.test and fifth.val == full.val
    assert set(fifth.train) < set(full.train)
    assert len(fifth.train) == pytest.approx(0.2 * len(full.train), abs=5)


def test_unknown_strategy_lists_choices():
    with pytest.raises(ValueError, match="random, official, all"):
        make_split(records(), strategy="kfold")
