"""Cross-dataset protocol: train on all of dataset A, test on all of dataset B.

The one way to ask for it is `data.test_dataset` (conf/experiment/cross_dataset.yaml sets it up):

    biqa-train experiment=cross_dataset data=koniq10k data.dataset.root=/data/koniq10k \\
        data.test_dataset.reader=livec data.test_dataset.root=/data/livec

The datamodule reads and validates both datasets, then joins them into one record list whose official
split is train = every image of A, test = every image of B; `make_split` with `strategy: official` carves
the validation part (checkpoint selection) out of A only, so nothing of B is seen before the test. Test
metrics are the usual ones plus `test/plcc_logistic`, PLCC after the 4-parameter logistic fit that
cross-dataset papers report (`test/plcc` stays the raw one).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from biqa.data.datasets.readers import reader_class
from biqa.data.datasets.records import DatasetRecords

SPLIT_STRATEGIES = ("official", "official_or_random")


def reader_by_name(reader: str, root: str | Path, **options: Any):
    """The reader registered as `reader` (`biqa.data.datasets.readers.READERS`, as in `data=<reader>`) for `root`;
    other reader arguments (e.g. KonIQ's `image_folder`) pass through."""
    return reader_class(reader)(root=root, **options)


def train_on_a_test_on_b(train: DatasetRecords, test: DatasetRecords) -> DatasetRecords:
    """One record list, A's records then B's, with the official split train = A, test = B.

    Scores of both are already on [0, 1], higher better. B's distortion labels are dropped where its label
    set differs from A's: label indices only mean something within one dataset's list of types."""
    test_records = test.records
    if test.distortion_types != train.distortion_types:
        test_records = [dataclasses.replace(r, distortion_type=None, distortion_level=None) for r in test_records]
    offset = len(train)
    return DatasetRecords(
        name=f"{train.name}->{test.name}",
        root=train.root,
        records=[*train.records, *test_records],
        scale=train.scale,
        distortion_types=train.distortion_types,
        official_splits={"train": list(range(offset)), "test": list(range(offset, offset + len(test)))},
    )


def check_split_strategy(strategy: str) -> None:
    if strategy not in SPLIT_STRATEGIES:
        raise ValueError(
            f"data.test_dataset trains on all of data.dataset and tests on all of data.test_dataset, which is "
            f"the joined datasets' official split, but data.split.strategy is '{strategy}': set "
            "data.split.strategy=official (experiment=cross_dataset does)"
        )
