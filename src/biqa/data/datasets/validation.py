"""Up-front checks of a dataset's records: every file and every score, all problems named at once.

`validate` checks that each image exists and decodes, that each raw score is a finite number inside the
dataset's declared range, and that no image is listed twice. It then either raises one
`DatasetValidationError` naming every problem with its file and source row, or (`on_error="skip"`) drops
the bad rows and writes their list next to the run.

Decoding 10k images takes a while, so images that decoded once are remembered in `cache_dir`
(keyed by path, size and modification time) and appended as they finish, so an interrupted run keeps them.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import math
import os
import stat
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from PIL import Image
from tqdm.auto import tqdm

from biqa.data.datasets.readers.builder import SourcedRecords, SourceRow
from biqa.data.datasets.records import DatasetRecords
from biqa.run_folder import PROBLEMS_FILE, SKIPPED_FILE

log = logging.getLogger(__name__)

DECODED_CACHE_FILE = "decoded_images.jsonl"
# Slack for scores written with fewer digits than the range's bounds (e.g. 1.0000001 on a 1-5 scale).
RANGE_TOLERANCE = 1e-6


@dataclass(frozen=True)
class Problem:
    index: int
    """Position of the record in `DatasetRecords.records`."""
    image_id: str
    source: SourceRow | None
    message: str

    def __str__(self) -> str:
        where = f"{self.source}: " if self.source is not None else ""
        return f"{where}{self.image_id}: {self.message}"


class DatasetValidationError(ValueError):
    def __init__(self, records: DatasetRecords, problems: list[Problem], report: Path | None):
        self.problems = problems
        bad_rows = len({problem.index for problem in problems})
        header = f"{records.name} ({records.root}): {bad_rows} of {len(records)} records have problems:"
        footer = "Fix them, or set data.validation.on_error=skip to drop these rows." + (
            f" This list is also in {report}." if report else ""
        )
        super().__init__("\n".join([header, *(f"  {problem}" for problem in problems), footer]))


def validate(
    records: DatasetRecords,
    on_error: Literal["raise", "skip"] = "raise",
    check_decode: bool = True,
    report_dir: Path | str | None = None,
    cache_dir: Path | str | None = None,
    num_workers: int | None = None,
) -> DatasetRecords:
    """`records` if every row is sound; else raises, or returns them without the bad rows (`on_error="skip"`)."""
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', not {on_error!r}")
    sources = _sources(records)
    problems: list[Problem] = []

    def report(index: int, message: str) -> None:
        problems.append(Problem(index, records.records[index].image_id, sources[index], message))

    first_listed: dict[str, int] = {}
    to_decode: list[tuple[int, Path, os.stat_result]] = []
    for index, record in enumerate(records.records):
        score_problem = _score_problem(record.raw_score, records.scale.low, records.scale.high)
        if score_problem:
            report(index, score_problem)
        first = first_listed.setdefault(record.image_id, index)
        if first != index:
            where = sources[first] or f"record {first}"
            report(index, f"duplicate of the image already listed at {where}")
        try:
            file_status = record.path.stat()
        except OSError:
            file_status = None
        if file_status is None or not stat.S_ISREG(file_status.st_mode):
            report(index, "file not found")
        elif check_decode:
            to_decode.append((index, record.path, file_status))

    if to_decode:
        cache = _DecodedCache(Path(cache_dir) / DECODED_CACHE_FILE if cache_dir is not None else None)
        for index, error in _decode_all(records.name, to_decode, cache, num_workers):
            report(index, error)

    if not problems:
        return records
    problems.sort(key=lambda problem: problem.index)
    report_path = None
    if report_dir is not None:
        report_path = Path(report_dir) / (SKIPPED_FILE if on_error == "skip" else PROBLEMS_FILE)
        _write_problems(report_path, problems)
    if on_error == "raise":
        raise DatasetValidationError(records, problems, report_path)
    bad = {problem.index for problem in problems}
    log.warning(
        "%s: skipped %d of %d records with problems%s",
        records.name,
        len(bad),
        len(records),
        f"; the list is in {report_path}" if report_path else "",
    )
    return _without(records, bad)


def _sources(records: DatasetRecords) -> list[SourceRow | None]:
    sources = records.sources if isinstance(records, SourcedRecords) else []
    # Records subset after reading no longer line up with the rows they came from.
    return list(sources) if len(sources) == len(records) else [None] * len(records)


def _score_problem(raw: float, low: float, high: float) -> str | None:
    if math.isnan(raw):
        return "score is empty or not a number"
    if math.isinf(raw):
        return f"score is infinite ({raw})"
    slack = RANGE_TOLERANCE * (high - low)
    if not low - slack <= raw <= high + slack:
        return f"score {raw:g} is outside the declared range [{low:g}, {high:g}]"
    return None


def _decode_error(path: Path) -> str | None:
    try:
        with Image.open(path) as image:
            image.load()
    except Exception as error:  # whatever the decoder raises, the file is what is broken
        return f"cannot be decoded ({type(error).__name__}: {error})"
    return None


def _decode_all(
    name: str,
    files: list[tuple[int, Path, os.stat_result]],
    cache: _DecodedCache,
    num_workers: int | None,
) -> list[tuple[int, str]]:
    """(record index, problem) for each file that does not decode; skips files the cache knows decode."""
    pending = [(index, path, status) for index, path, status in files if not cache.known(path, status)]
    errors = []
    if not pending:
        return errors
    # Pillow releases the GIL while decoding, so threads use every core without copying records to processes.
    executor = ThreadPoolExecutor(max_workers=num_workers or os.cpu_count() or 1)
    futures = {executor.submit(_decode_error, path): (index, path, status) for index, path, status in pending}
    unread = set(futures)
    try:
        progress = tqdm(as_completed(futures), total=len(futures), desc=f"checking {name} images", unit="img")
        for future in progress:
            unread.discard(future)
            index, path, status = futures[future]
            error = future.result()
            if error is None:
                cache.add(path, status)
            else:
                errors.append((index, error))
    finally:
        executor.shutdown(wait=False, cancel_futures=True)
        # Stopped early (an interrupt): decodes that finished but were not read yet still count.
        for future in unread:
            if (
                future.done()
                and not future.cancelled()
                and future.exception() is None
                and future.result() is None
            ):
                cache.add(*futures[future][1:])
        cache.flush()
    return errors


class _DecodedCache:
    """Files known to decode, appended as JSON lines so work finished before an interruption is kept."""

    FLUSH_EVERY = 256

    def __init__(self, path: Path | None):
        self.path = path
        self._known: set[tuple[str, int, int]] = set()
        self._unwritten: list[tuple[str, int, int]] = []
        if path is not None and path.is_file():
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    entry = json.loads(line)
                    self._known.add((entry["path"], entry["size"], entry["mtime_ns"]))
                except (ValueError, KeyError, TypeError):
                    continue  # a line cut short by an interrupted write

    @staticmethod
    def _key(path: Path, status: os.stat_result) -> tuple[str, int, int]:
        return os.path.abspath(path), status.st_size, status.st_mtime_ns

    def known(self, path: Path, status: os.stat_result) -> bool:
        return self.path is not None and self._key(path, status) in self._known

    def add(self, path: Path, status: os.stat_result) -> None:
        if self.path is None:
            return
        self._unwritten.append(self._key(path, status))
        if len(self._unwritten) >= self.FLUSH_EVERY:
            self.flush()

    def flush(self) -> None:
        if self.path is None or not self._unwritten:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lines = "".join(
            json.dumps({"path": path, "size": size, "mtime_ns": mtime}) + "\n"
            for path, size, mtime in self._unwritten
        )
        with self.path.open("a", encoding="utf-8") as file:
            file.write(lines)
        self._known.update(self._unwritten)
        self._unwritten.clear()


def _write_problems(path: Path, problems: list[Problem]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(["file", "source_file", "row", "problem"])
        for problem in problems:
            source = problem.source
            writer.writerow(
                [
                    problem.image_id,
                    source.file if source else "",
                    source.row if source else "",
                    problem.message,
                ]
            )


def _without(records: DatasetRecords, dropped: set[int]) -> DatasetRecords:
    kept = [index for index in range(len(records)) if index not in dropped]
    new_index = {old: new for new, old in enumerate(kept)}
    changes: dict = {
        "records": [records.records[index] for index in kept],
        "official_splits": {
            split: [new_index[index] for index in indices if index in new_index]
            for split, indices in records.official_splits.items()
        },
    }
    if isinstance(records, SourcedRecords) and len(records.sources) == len(records):
        changes["sources"] = [records.sources[index] for index in kept]
    return dataclasses.replace(records, **changes)
