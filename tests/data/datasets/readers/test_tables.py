import math

import numpy as np
import pytest

from biqa.data.datasets.readers.tables import read_csv, to_float, to_text


def test_csv_rows_are_numbered_as_lines_in_the_file(tmp_path):
    path = tmp_path / "s.csv"
    path.write_bytes(b'\xef\xbb\xbfName,MOS,,\n"a, b.jpg",1\n\n"multi\nline.jpg",2\nshort\n')
    table = read_csv(path)
    assert table.column("name") == "Name"
    assert [(row.number, row.values["Name"], row.values["MOS"]) for row in table.rows] == [
        (2, "a, b.jpg", "1"),
        (4, "multi\nline.jpg", "2"),
        (6, "short", ""),
    ]


def test_csv_in_a_windows_code_page(tmp_path):
    path = tmp_path / "s.csv"
    path.write_bytes("name,mos\ncaf\xe9.jpg,3\n".encode("cp1252"))
    assert read_csv(path).rows[0].values["name"] == "café.jpg"


@pytest.mark.parametrize(
    ("value", "expected"),
    [("3.5", 3.5), (" 4 ", 4.0), (2, 2.0), (np.float32(1.5), 1.5), ("inf", math.inf)],
)
def test_to_float(value, expected):
    assert to_float(value) == expected


@pytest.mark.parametrize("value", ["", None, "n/a", "nan"])
def test_to_float_marks_missing_scores_as_nan(value):
    assert math.isnan(to_float(value))


def test_to_text_writes_integral_sheet_numbers_without_decimals():
    assert to_text(1600.0) == "1600" and to_text(None) == "" and to_text(" a.png ") == "a.png"
