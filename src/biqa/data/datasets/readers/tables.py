"""The score files datasets ship (CSV, XLSX, MATLAB, plain text), read with each row's number in its file.

Values stay as the file holds them (text, or numbers for sheets and .mat files); readers turn them into
names and scores with `to_text` / `to_float`, and validation reports bad ones by file and row.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Row:
    number: int
    """Where a user finds it: the line of a text file, the row of a sheet, the 1-based entry of a .mat array."""
    values: dict[str, Any]


@dataclass(frozen=True)
class Table:
    path: Path
    columns: list[str]
    rows: list[Row]

    def column(self, *names: str) -> str:
        """The header cell matching one of `names` (case and surrounding spaces ignored)."""
        wanted = {_header_key(name) for name in names}
        for column in self.columns:
            if _header_key(column) in wanted:
                return column
        raise ValueError(
            f"{self.path.name}: no column named {' or '.join(map(repr, names))}; its header is {self.columns}"
        )


def _header_key(cell: Any) -> str:
    return to_text(cell).casefold()


def read_csv(path: Path) -> Table:
    """A CSV file with a header line; blank lines are skipped, row numbers are the file's line numbers."""
    try:
        return _read_csv(path, "utf-8-sig")
    except UnicodeDecodeError:
        # Spreadsheets exported on Windows write cp1252; latin-1 decodes any byte, so names still come through.
        return _read_csv(path, "latin-1")


def _read_csv(path: Path, encoding: str) -> Table:
    with path.open(newline="", encoding=encoding) as file:
        reader = csv.reader(file)
        header = next(reader, None)
        if header is None:
            raise ValueError(f"{path.name}: the file is empty")
        columns = [cell.strip() for cell in header]
        rows = []
        last_line = reader.line_num
        for cells in reader:
            # A quoted field may span lines: a row is numbered by the line it starts on.
            first_line, last_line = last_line + 1, reader.line_num
            if any(cell.strip() for cell in cells):
                cells = cells + [""] * (len(columns) - len(cells))
                rows.append(Row(first_line, {column: cells[i] for i, column in enumerate(columns) if column}))
    return Table(path, columns, rows)


def read_xlsx(path: Path, required: Sequence[str], sheet: str | None = None) -> Table:
    """The first table of a sheet whose header row holds every `required` column, wherever it starts.

    Released sheets put titles above the header or leave empty columns before it (CSIQ's does both).
    """
    from openpyxl import load_workbook

    workbook = load_workbook(path, data_only=True)
    try:
        if sheet is not None and sheet not in workbook.sheetnames:
            raise ValueError(f"{path.name}: no sheet {sheet!r}; its sheets are {workbook.sheetnames}")
        worksheet = workbook[sheet] if sheet is not None else workbook.worksheets[0]
        wanted = {_header_key(name) for name in required}
        header: dict[int, str] | None = None
        rows = []
        for number, cells in enumerate(worksheet.iter_rows(values_only=True), start=1):
            if header is None:
                keys = {_header_key(cell) for cell in cells}
                if wanted <= keys:
                    header = {i: to_text(cell) for i, cell in enumerate(cells) if to_text(cell)}
            elif any(cell is not None and to_text(cell) for cell in cells):
                rows.append(
                    Row(
                        number, {column: cells[i] if i < len(cells) else None for i, column in header.items()}
                    )
                )
    finally:
        workbook.close()
    if header is None:
        raise ValueError(
            f"{path.name}: no header row with the columns {list(required)} in sheet {worksheet.title!r}"
        )
    return Table(path, list(header.values()), rows)


def read_text_lines(path: Path, separator: str | None = None) -> list[Row]:
    """Non-blank lines split on `separator` (any whitespace when None); values are keyed '0', '1', ..."""
    rows = []
    with path.open(encoding="utf-8-sig", errors="replace") as file:
        for number, line in enumerate(file, start=1):
            if line.strip():
                fields = [field.strip() for field in line.strip().split(separator)]
                rows.append(Row(number, {str(i): field for i, field in enumerate(fields)}))
    return rows


def load_mat(path: Path, *variables: str) -> dict[str, np.ndarray]:
    """The named variables of a MATLAB v5 file (as the LIVE releases are saved)."""
    from scipy.io import loadmat

    try:
        content = loadmat(path)
    except NotImplementedError as error:
        raise ValueError(
            f"{path.name}: saved as MATLAB v7.3 (HDF5); re-save it with save(..., '-v7')"
        ) from error
    missing = [name for name in variables if name not in content]
    if missing:
        present = sorted(key for key in content if not key.startswith("__"))
        raise ValueError(f"{path.name}: no variable {missing}; it holds {present}")
    return {name: content[name] for name in variables}


def mat_strings(array: np.ndarray) -> list[str]:
    """A MATLAB cell array of strings, in MATLAB's column order."""
    return [
        to_text(cell.flat[0] if isinstance(cell, np.ndarray) and cell.size else cell)
        for cell in array.ravel(order="F")
    ]


def mat_numbers(array: np.ndarray) -> list[float]:
    return [float(value) for value in np.asarray(array, dtype=float).ravel(order="F")]


def to_text(value: Any) -> str:
    """A cell as text; sheets store names such as CSIQ's `1600` as numbers."""
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, np.ndarray):
        return to_text(value.item()) if value.size == 1 else ""
    return str(value).strip()


def to_float(value: Any) -> float:
    """A score cell as a number; empty or non-numeric cells become NaN, which validation reports by row."""
    if isinstance(value, int | float | np.number) and not isinstance(value, bool):
        return float(value)
    try:
        return float(to_text(value))
    except ValueError:
        return math.nan
