"""PIPAL (Jinjin et al. 2020): references with traditional distortions and image-restoration outputs, Elo-rated."""

from __future__ import annotations

import math
from pathlib import Path

from biqa.data.datasets.readers.builder import RecordsBuilder, SourceRow
from biqa.data.datasets.readers.tables import read_text_lines, to_float
from biqa.data.datasets.records import DatasetRecords, ScoreScale


class PIPAL:
    """`Train_Label/<reference>.txt` (lines `dist_name,elo`) with `Train_Dist/` and `Train_Ref/`.

    Elo scores have no fixed bounds: `score_range` (low, high) maps them to [0, 1]; left out, it is the
    lowest and highest Elo of the labels read.
    """

    def __init__(
        self,
        root: str | Path,
        label_folder: str = "Train_Label",
        image_folder: str = "Train_Dist",
        reference_folder: str = "Train_Ref",
        score_range: tuple[float, float] | None = None,
    ):
        self.root = root
        self.label_folder = label_folder
        self.image_folder = image_folder
        self.reference_folder = reference_folder
        self.score_range = tuple(score_range) if score_range is not None else None

    def __call__(self) -> DatasetRecords:
        builder = RecordsBuilder("pipal", self.root)
        builder.require(folders=[self.label_folder, self.image_folder])
        label_files = sorted((builder.root / self.label_folder).glob("*.txt"))
        if not label_files:
            raise FileNotFoundError(f"pipal: no label files (*.txt) in {builder.root / self.label_folder}")
        scores = []
        for label_file in label_files:
            reference_id = builder.reference(f"{self.reference_folder}/{label_file.stem}.bmp")
            source_file = f"{self.label_folder}/{label_file.name}"
            for row in read_text_lines(label_file, separator=","):
                scores.append(to_float(row.values.get("1")))
                builder.add(
                    f"{self.image_folder}/{row.values['0']}",
                    scores[-1],
                    SourceRow(source_file, row.number),
                    reference_id=reference_id,
                )
        low, high = self.score_range or _observed_range(scores)
        return builder.build(ScoreScale(low, high, higher_is_better=True, name="Elo"))


def _observed_range(scores: list[float]) -> tuple[float, float]:
    finite = [score for score in scores if math.isfinite(score)]
    if not finite:
        raise ValueError("pipal: no label holds a numeric Elo score")
    return min(finite), max(finite)
