"""The record type every reader returns, whatever the dataset's layout."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class ScoreScale:
    """How a dataset's raw scores map to biqa's training scale ([0, 1], higher is better)."""

    low: float
    high: float
    higher_is_better: bool = True
    name: str = "MOS"

    def normalise(self, raw: float) -> float:
        unit = (raw - self.low) / (self.high - self.low)
        return unit if self.higher_is_better else 1.0 - unit

    def denormalise(self, unit: float) -> float:
        unit = unit if self.higher_is_better else 1.0 - unit
        return self.low + unit * (self.high - self.low)


@dataclass(frozen=True)
class ImageRecord:
    path: Path
    score: float
    """Normalised score in [0, 1], higher is better."""
    raw_score: float
    image_id: str
    """Stable name of the image inside its dataset (relative path); metrics de-duplicate by it."""
    reference_id: str | None = None
    """Pristine source of a synthetically distorted image; splits never let one cross train/test."""
    distortion_type: int | None = None
    distortion_level: int | None = None


@dataclass
class DatasetRecords:
    name: str
    root: Path
    records: list[ImageRecord]
    scale: ScoreScale
    distortion_types: list[str] | None = None
    """Names of the distortion-type labels when the dataset has them (index = `distortion_type`)."""
    official_splits: dict[str, list[int]] = field(default_factory=dict)
    """Official split name ('train', 'val', 'test') -> record indices, where the dataset defines one."""

    def __len__(self) -> int:
        return len(self.records)

    @property
    def has_references(self) -> bool:
        return any(r.reference_id is not None for r in self.records)

    @property
    def has_distortion_labels(self) -> bool:
        return self.distortion_types is not None and any(r.distortion_type is not None for r in self.records)
