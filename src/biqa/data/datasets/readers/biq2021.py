"""BIQ2021 (Ahmed and Asif 2022): 12,000 photos rated by 30 lab observers, MOS rescaled to 0-1."""

from __future__ import annotations

from pathlib import Path

from biqa.data.datasets.readers.builder import RecordsBuilder, SourceRow
from biqa.data.datasets.readers.tables import read_csv, to_float, to_text
from biqa.data.datasets.records import DatasetRecords, ScoreScale

TRAIN_FILE = "Train (Images and MOS).csv"
TEST_FILE = "Test (Images and MOS).csv"
SCALE = ScoreScale(0.0, 1.0, higher_is_better=True, name="MOS")


class BIQ2021:
    """`Images/` with `Train (Images and MOS).csv` and, where present, `Test (Images and MOS).csv`.

    The two files are the official 10,000/2,000 split. The training file's header carries two empty
    trailing columns (`Image Name,MOS,,`), and names hold spaces and parentheses.
    """

    def __init__(self, root: str | Path, image_folder: str = "Images"):
        self.root = root
        self.image_folder = image_folder

    def __call__(self) -> DatasetRecords:
        builder = RecordsBuilder("biq2021", self.root)
        (train_path,) = builder.require(TRAIN_FILE, folders=[self.image_folder])
        split_files = {"train": (TRAIN_FILE, train_path), "test": (TEST_FILE, builder.find(TEST_FILE))}
        splits = {}
        for split, (file_name, path) in split_files.items():
            if path is None:
                continue
            table = read_csv(path)
            name_column, score_column = table.column("Image Name"), table.column("MOS")
            splits[split] = [
                builder.add(
                    f"{self.image_folder}/{to_text(row.values[name_column])}",
                    to_float(row.values[score_column]),
                    SourceRow(file_name, row.number),
                )
                for row in table.rows
            ]
        return builder.build(SCALE, official_splits=splits)
