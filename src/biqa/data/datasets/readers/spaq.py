"""SPAQ (Fang et al. 2020): 11,125 smartphone photos with MOS and attribute scores."""

from __future__ import annotations

from pathlib import Path

from biqa.data.datasets.readers.builder import RecordsBuilder, SourceRow
from biqa.data.datasets.readers.tables import read_xlsx, to_float, to_text
from biqa.data.datasets.records import DatasetRecords, ScoreScale

SCORES_FILE = "Annotations/MOS and Image attribute scores.xlsx"
SCALE = ScoreScale(0.0, 100.0, higher_is_better=True, name="MOS")


class SPAQ:
    """`Annotations/MOS and Image attribute scores.xlsx` (`Image name`, `MOS`, ...) with the photos in `TestImage/`.

    The photos are large; most works train on copies resized so the short side is 512: point
    `image_folder` at such a folder (same file names) to use them.
    """

    def __init__(self, root: str | Path, image_folder: str = "TestImage"):
        self.root = root
        self.image_folder = image_folder

    def __call__(self) -> DatasetRecords:
        builder = RecordsBuilder("spaq", self.root)
        (scores_path,) = builder.require(SCORES_FILE, folders=[self.image_folder])
        table = read_xlsx(scores_path, required=["Image name", "MOS"])
        name_column, score_column = table.column("Image name"), table.column("MOS")
        for row in table.rows:
            builder.add(
                f"{self.image_folder}/{to_text(row.values[name_column])}",
                to_float(row.values[score_column]),
                SourceRow(SCORES_FILE, row.number),
            )
        return builder.build(SCALE)
