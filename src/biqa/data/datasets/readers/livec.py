"""LIVE In the Wild Image Quality Challenge (LIVE-C / CLIVE; Ghadiyaram and Bovik 2016): 1,162 photos."""

from __future__ import annotations

from pathlib import Path

from biqa.data.datasets.readers.builder import RecordsBuilder, SourceRow
from biqa.data.datasets.readers.tables import load_mat, mat_numbers, mat_strings
from biqa.data.datasets.records import DatasetRecords, ScoreScale

NAMES_FILE = "Data/AllImages_release.mat"
SCORES_FILE = "Data/AllMOS_release.mat"
SCALE = ScoreScale(0.0, 100.0, higher_is_better=True, name="MOS")
# The first entries are the images that trained the original study's raters; by convention they are dropped.
STUDY_TRAINING_IMAGES = 7


class LIVEChallenge:
    """`Data/AllImages_release.mat` (names) and `Data/AllMOS_release.mat` (MOS 0-100), images in `Images/`."""

    def __init__(self, root: str | Path, image_folder: str = "Images"):
        self.root = root
        self.image_folder = image_folder

    def __call__(self) -> DatasetRecords:
        builder = RecordsBuilder("livec", self.root)
        names_path, scores_path = builder.require(NAMES_FILE, SCORES_FILE, folders=[self.image_folder])
        names = mat_strings(load_mat(names_path, "AllImages_release")["AllImages_release"])
        scores = mat_numbers(load_mat(scores_path, "AllMOS_release")["AllMOS_release"])
        if len(names) != len(scores):
            raise ValueError(
                f"livec: {NAMES_FILE} lists {len(names)} images but {SCORES_FILE} {len(scores)} scores"
            )
        for entry, (name, score) in enumerate(zip(names, scores, strict=True), start=1):
            if entry > STUDY_TRAINING_IMAGES:
                builder.add(f"{self.image_folder}/{name}", score, SourceRow(SCORES_FILE, entry))
        return builder.build(SCALE)
