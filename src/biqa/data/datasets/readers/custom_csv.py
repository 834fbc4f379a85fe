"""Any folder of images with a CSV of scores; the columns, score range and direction come from the config."""

from __future__ import annotations

import posixpath
from collections.abc import Sequence
from pathlib import Path

from biqa.data.datasets.readers.builder import RecordsBuilder, SourceRow
from biqa.data.datasets.readers.tables import read_csv, to_float, to_text
from biqa.data.datasets.records import DatasetRecords, ScoreScale


class CustomCSV:
    """A CSV under `root` whose `path_column` holds image paths relative to `root/image_folder`.

    `score_range` is the raw scale's (low, high); `higher_is_better` its direction. A `reference_column`
    (the pristine source of each image) makes splits keep every reference on one side.
    """

    def __init__(
        self,
        root: str | Path,
        csv_file: str,
        path_column: str,
        score_column: str,
        score_range: Sequence[float],
        higher_is_better: bool = True,
        image_folder: str = "",
        reference_column: str | None = None,
        name: str = "custom",
    ):
        if len(score_range) != 2 or not score_range[0] < score_range[1]:
            raise ValueError(
                f"{name}: score_range must be [low, high] with low < high, not {list(score_range)}"
            )
        self.root = root
        self.csv_file = csv_file
        self.path_column = path_column
        self.score_column = score_column
        self.scale = ScoreScale(
            float(score_range[0]), float(score_range[1]), higher_is_better, name=score_column
        )
        self.image_folder = image_folder
        self.reference_column = reference_column
        self.name = name

    def __call__(self) -> DatasetRecords:
        builder = RecordsBuilder(self.name, self.root)
        (csv_path,) = builder.require(self.csv_file, folders=[self.image_folder])
        table = read_csv(csv_path)
        path_column, score_column = table.column(self.path_column), table.column(self.score_column)
        reference_column = table.column(self.reference_column) if self.reference_column else None
        for row in table.rows:
            builder.add(
                posixpath.join(self.image_folder, to_text(row.values[path_column])),
                to_float(row.values[score_column]),
                SourceRow(self.csv_file, row.number),
                reference_id=to_text(row.values[reference_column]) if reference_column else None,
            )
        return builder.build(self.scale)
