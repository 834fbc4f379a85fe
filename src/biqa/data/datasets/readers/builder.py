"""What every reader shares: locating files under a root whatever their case, and assembling the records.

Readers are lenient on purpose: a row with a missing file or an empty score still becomes a record, so
that `biqa.data.datasets.validation.validate` can name every problem of a dataset at once, by file and row.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from biqa.data.datasets.records import DatasetRecords, ImageRecord, ScoreScale

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SourceRow:
    """Where a record comes from: a score file (relative to the dataset root) and its row there."""

    file: str
    row: int

    def __str__(self) -> str:
        return f"{self.file}, row {self.row}"


@dataclass
class SourcedRecords(DatasetRecords):
    """`DatasetRecords` plus each record's source row, aligned with `records`, for validation's messages."""

    # Stand-in until ImageRecord carries its own source file and row.
    sources: list[SourceRow] = field(default_factory=list)


class CaseInsensitivePaths:
    """Finds paths under a root whose case differs from the one on disk, listing each folder only once."""

    def __init__(self, root: Path):
        self.root = root
        self._listings: dict[Path, tuple[set[str], dict[str, list[str]]]] = {}

    def resolve(self, relative: str) -> str:
        """`relative` as spelled on disk; unchanged where nothing (or more than one name) matches."""
        folder, parts = self.root, []
        for part in PurePosixPath(relative).parts:
            names, by_folded_name = self._listing(folder)
            if part not in names:
                matches = by_folded_name.get(part.casefold(), [])
                part = matches[0] if len(matches) == 1 else part
            parts.append(part)
            folder = folder / part
        return "/".join(parts)

    def _listing(self, folder: Path) -> tuple[set[str], dict[str, list[str]]]:
        if folder not in self._listings:
            try:
                names = set(os.listdir(folder))
            except OSError:
                names = set()
            by_folded_name: dict[str, list[str]] = {}
            for name in names:
                by_folded_name.setdefault(name.casefold(), []).append(name)
            self._listings[folder] = (names, by_folded_name)
        return self._listings[folder]


@dataclass(frozen=True)
class _PendingRecord:
    image_id: str
    raw_score: float
    source: SourceRow
    reference_id: str | None
    distortion_type: int | None
    distortion_level: int | None


class RecordsBuilder:
    """Collects a reader's rows, resolving file-name case, and builds the records once the scale is known."""

    def __init__(self, name: str, root: Path | str):
        self.name = name
        self.root = Path(root).expanduser()
        self._paths = CaseInsensitivePaths(self.root)
        self._pending: list[_PendingRecord] = []
        self._case_fixes: list[tuple[str, str]] = []

    def __len__(self) -> int:
        return len(self._pending)

    def require(self, *files: str, folders: Sequence[str] = ()) -> list[Path]:
        """The dataset's score files (and image folders) must exist: one error names everything missing."""
        if not self.root.is_dir():
            raise FileNotFoundError(f"{self.name}: the dataset root {self.root} is not a folder")
        found = [self.find(file) for file in files]
        missing = [file for file, path in zip(files, found, strict=True) if path is None]
        missing += [
            f"{folder}/" for folder in folders if not (self.root / self._paths.resolve(folder)).is_dir()
        ]
        if missing:
            present = sorted(os.listdir(self.root))
            shown = ", ".join(present[:30]) + (f", ... ({len(present)} entries)" if len(present) > 30 else "")
            raise FileNotFoundError(
                f"{self.name}: missing under {self.root}: {', '.join(missing)}. "
                f"Point data.dataset.root at the folder as the dataset's owners distribute it; it holds: {shown or 'nothing'}"
            )
        return [path for path in found if path is not None]

    def find(self, relative: str) -> Path | None:
        """An optional file of the dataset (such as an official split list), or None."""
        path = self.root / self._paths.resolve(relative)
        return path if path.is_file() else None

    def reference(self, relative: str) -> str:
        """A pristine reference's id: its path as on disk where present (TID2013's `i25.bmp` is lower case)."""
        return self._paths.resolve(relative)

    def add(
        self,
        relative_path: str,
        raw_score: float,
        source: SourceRow,
        reference_id: str | None = None,
        distortion_type: int | None = None,
        distortion_level: int | None = None,
    ) -> int:
        """Adds one image (path relative to the root, as the score file spells it); returns its index."""
        on_disk = self._paths.resolve(relative_path)
        if on_disk != relative_path:
            self._case_fixes.append((relative_path, on_disk))
        self._pending.append(
            _PendingRecord(on_disk, raw_score, source, reference_id, distortion_type, distortion_level)
        )
        return len(self._pending) - 1

    def build(
        self,
        scale: ScoreScale,
        distortion_types: list[str] | None = None,
        official_splits: dict[str, list[int]] | None = None,
    ) -> SourcedRecords:
        if self._case_fixes:
            shown = "; ".join(f"{listed!r} -> {on_disk!r}" for listed, on_disk in self._case_fixes[:10])
            more = f" (and {len(self._case_fixes) - 10} more)" if len(self._case_fixes) > 10 else ""
            log.warning(
                "%s: %d file name(s) differ in case from the score file and were matched on disk: %s%s",
                self.name,
                len(self._case_fixes),
                shown,
                more,
            )
        records = [
            ImageRecord(
                path=self.root / pending.image_id,
                score=scale.normalise(pending.raw_score),
                raw_score=pending.raw_score,
                image_id=pending.image_id,
                reference_id=pending.reference_id,
                distortion_type=pending.distortion_type,
                distortion_level=pending.distortion_level,
            )
            for pending in self._pending
        ]
        return SourcedRecords(
            name=self.name,
            root=self.root,
            records=records,
            scale=scale,
            distortion_types=distortion_types,
            official_splits=official_splits or {},
            sources=[pending.source for pending in self._pending],
        )


def split_indices(index_of: dict[str, int], members: dict[str, Iterable[str]]) -> dict[str, list[int]]:
    """Split name -> record indices, from the image names a dataset's split files list."""
    return {
        split: sorted({index_of[name] for name in names if name in index_of})
        for split, names in members.items()
    }
