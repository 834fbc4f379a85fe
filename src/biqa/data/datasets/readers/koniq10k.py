"""KonIQ-10k (Hosu et al. 2020): 10,073 in-the-wild photos, crowd-rated."""

from __future__ import annotations

from pathlib import Path

from biqa.data.datasets.readers.builder import RecordsBuilder, SourceRow, split_indices
from biqa.data.datasets.readers.tables import read_csv, to_float, to_text
from biqa.data.datasets.records import DatasetRecords, ScoreScale

SCORES_FILE = "koniq10k_scores_and_distributions.csv"
SETS_FILE = "koniq10k_distributions_sets.csv"
SCALES = {
    "MOS_zscore": ScoreScale(0.0, 100.0, higher_is_better=True, name="MOS_zscore"),
    "MOS": ScoreScale(1.0, 5.0, higher_is_better=True, name="MOS"),
}
SET_NAMES = {"training": "train", "validation": "val", "test": "test"}


class KonIQ10k:
    """`koniq10k_scores_and_distributions.csv` with the images in `512x384/` (or `1024x768/`).

    Most papers train on `MOS_zscore` (0-100); `MOS` is the raw 1-5 rating. The official
    training/validation/test split comes from `koniq10k_distributions_sets.csv` when it is present.
    """

    def __init__(self, root: str | Path, image_folder: str = "512x384", score_column: str = "MOS_zscore"):
        if score_column not in SCALES:
            raise ValueError(f"koniq10k: score_column must be one of {sorted(SCALES)}, not {score_column!r}")
        self.root = root
        self.image_folder = image_folder
        self.score_column = score_column

    def __call__(self) -> DatasetRecords:
        builder = RecordsBuilder("koniq10k", self.root)
        (scores_path,) = builder.require(SCORES_FILE, folders=[self.image_folder])
        scores = read_csv(scores_path)
        name_column, score_column = scores.column("image_name"), scores.column(self.score_column)
        index_of = {}
        for row in scores.rows:
            name = to_text(row.values[name_column])
            index_of.setdefault(name, len(builder))
            builder.add(
                f"{self.image_folder}/{name}",
                to_float(row.values[score_column]),
                SourceRow(SCORES_FILE, row.number),
            )
        return builder.build(
            SCALES[self.score_column], official_splits=self._official_splits(builder, index_of)
        )

    @staticmethod
    def _official_splits(builder: RecordsBuilder, index_of: dict[str, int]) -> dict[str, list[int]]:
        sets_path = builder.find(SETS_FILE)
        if sets_path is None:
            return {}
        sets = read_csv(sets_path)
        name_column, set_column = sets.column("image_name"), sets.column("set")
        members: dict[str, list[str]] = {split: [] for split in SET_NAMES.values()}
        for row in sets.rows:
            split = SET_NAMES.get(to_text(row.values[set_column]).casefold())
            if split is not None:
                members[split].append(to_text(row.values[name_column]))
        return split_indices(index_of, members)
