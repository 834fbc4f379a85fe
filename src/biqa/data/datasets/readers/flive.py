"""FLIVE / PaQ-2-PiQ (Ying et al. 2020): about 40,000 in-the-wild pictures."""

from __future__ import annotations

import posixpath
from pathlib import Path

from biqa.data.datasets.readers.builder import RecordsBuilder, SourceRow, split_indices
from biqa.data.datasets.readers.tables import read_csv, to_float, to_text
from biqa.data.datasets.records import DatasetRecords, ScoreScale

SCORES_FILE = "labels_image.csv"
TEST_FILE = "labels640.csv"
VALIDATION_FILE = "labels=640_padded.csv"
SCALE = ScoreScale(0.0, 100.0, higher_is_better=True, name="MOS")


class FLIVE:
    """`labels_image.csv` (`name,mos`; names include the source folder, e.g. `voc_emotic_ava/...jpg`).

    Official split, where its files are present: test = `labels640.csv`, validation = the rows of
    `labels=640_padded.csv` marked `is_valid`, train = every other image.
    """

    def __init__(self, root: str | Path, image_folder: str = ""):
        self.root = root
        self.image_folder = image_folder

    def __call__(self) -> DatasetRecords:
        builder = RecordsBuilder("flive", self.root)
        (scores_path,) = builder.require(SCORES_FILE, folders=[self.image_folder])
        scores = read_csv(scores_path)
        name_column, score_column = scores.column("name"), scores.column("mos")
        index_of = {}
        for row in scores.rows:
            name = to_text(row.values[name_column])
            index_of.setdefault(name, len(builder))
            builder.add(
                posixpath.join(self.image_folder, name),
                to_float(row.values[score_column]),
                SourceRow(SCORES_FILE, row.number),
            )
        return builder.build(SCALE, official_splits=self._official_splits(builder, index_of))

    @staticmethod
    def _official_splits(builder: RecordsBuilder, index_of: dict[str, int]) -> dict[str, list[int]]:
        members: dict[str, set[str]] = {}
        if (test_path := builder.find(TEST_FILE)) is not None:
            test = read_csv(test_path)
            name_column = test.column("name_image", "name")
            members["test"] = {to_text(row.values[name_column]) for row in test.rows}
        if (validation_path := builder.find(VALIDATION_FILE)) is not None:
            validation = read_csv(validation_path)
            name_column, valid_column = validation.column("name_image", "name"), validation.column("is_valid")
            members["val"] = {
                to_text(row.values[name_column])
                for row in validation.rows
                if to_text(row.values[valid_column]).casefold() in {"true", "1"}
            }
        if not members:
            return {}
        members["train"] = set(index_of).difference(*members.values())
        return split_indices(index_of, members)
