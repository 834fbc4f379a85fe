import csv
import math
import os
import re
from pathlib import Path

import pytest
from PIL import Image

from biqa.data.datasets import validation
from biqa.data.datasets.readers.custom_csv import CustomCSV
from biqa.data.datasets.records import DatasetRecords, ImageRecord, ScoreScale
from biqa.data.datasets.validation import DatasetValidationError, validate

# Line 1 is the header: line numbers below are the rows a user sees in an editor.
SCORES = """file,mos
good.png,3.0
missing.png,2.0
broken.png,4.0
nan_score.png,nan
empty_score.png,
too_high.png,7.5
good.png,2.5
other.png,inf
"""


def write_image(path: Path) -> None:
    Image.new("RGB", (8, 6), (10, 20, 30)).save(path)


@pytest.fixture
def dataset(tmp_path):
    (tmp_path / "scores.csv").write_text(SCORES)
    for name in ("good.png", "nan_score.png", "empty_score.png", "too_high.png", "other.png"):
        write_image(tmp_path / name)
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    return tmp_path


def read(root: Path) -> DatasetRecords:
    return CustomCSV(
        root, csv_file="scores.csv", path_column="file", score_column="mos", score_range=[1, 5]
    )()


def test_every_problem_is_named_in_one_error_with_file_and_row(dataset, tmp_path):
    records = read(dataset)
    with pytest.raises(DatasetValidationError) as caught:
        validate(records, report_dir=tmp_path / "run")
    message = str(caught.value)
    expected = [
        r"scores\.csv, row 3: missing\.png: file not found",
        r"scores\.csv, row 4: broken\.png: cannot be decoded \(UnidentifiedImageError",
        r"scores\.csv, row 5: nan_score\.png: score is empty or not a number",
        r"scores\.csv, row 6: empty_score\.png: score is empty or not a number",
        r"scores\.csv, row 7: too_high\.png: score 7\.5 is outside the declared range \[1, 5\]",
        r"scores\.csv, row 8: good\.png: duplicate of the image already listed at scores\.csv, row 2",
        r"scores\.csv, row 9: other\.png: score is infinite",
    ]
    for pattern in expected:
        assert re.search(pattern, message), pattern
    assert "7 of 8 records have problems" in message
    assert "row 2: good.png" not in message
    assert isinstance(caught.value, ValueError)
    assert len(caught.value.problems) == 7
    assert (tmp_path / "run" / validation.PROBLEMS_FILE).is_file()


def test_skip_drops_bad_rows_and_writes_the_list(dataset, tmp_path):
    records = read(dataset)
    records.official_splits = {"train": [0, 1, 2], "test": [5, 6, 7]}
    kept = validate(records, on_error="skip", report_dir=tmp_path / "run")

    assert [r.image_id for r in kept.records] == ["good.png"]
    assert kept.official_splits == {"train": [0], "test": []}
    assert kept.sources == [records.sources[0]]
    with (tmp_path / "run" / validation.SKIPPED_FILE).open(newline="") as file:
        rows = list(csv.DictReader(file))
    assert [(row["file"], row["row"]) for row in rows] == [
        ("missing.png", "3"),
        ("broken.png", "4"),
        ("nan_score.png", "5"),
        ("empty_score.png", "6"),
        ("too_high.png", "7"),
        ("good.png", "8"),
        ("other.png", "9"),
    ]
    assert rows[0]["source_file"] == "scores.csv" and rows[0]["problem"] == "file not found"


def test_sound_records_come_back_unchanged(dataset):
    (dataset / "scores.csv").write_text("file,mos\ngood.png,1\nother.png,5.0\n")
    records = read(dataset)
    assert validate(records) is records


def test_without_decoding_only_broken_files_pass(dataset):
    (dataset / "scores.csv").write_text("file,mos\ngood.png,3\nbroken.png,4\n")
    assert len(validate(read(dataset), check_decode=False)) == 2
    with pytest.raises(DatasetValidationError, match="broken.png: cannot be decoded"):
        validate(read(dataset))


def test_truncated_image_is_reported(tmp_path):
    Image.new("RGB", (64, 64), (1, 2, 3)).save(tmp_path / "cut.jpg", quality=95)
    data = (tmp_path / "cut.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    (tmp_path / "scores.csv").write_text("file,mos\ncut.jpg,3\n")
    with pytest.raises(DatasetValidationError, match="cut.jpg: cannot be decoded"):
        validate(read(tmp_path))


def test_records_without_sources_are_named_by_image(tmp_path):
    records = DatasetRecords(
        name="plain",
        root=tmp_path,
        records=[ImageRecord(path=tmp_path / "a.png", score=math.nan, raw_score=math.nan, image_id="a.png")],
        scale=ScoreScale(0.0, 1.0),
    )
    with pytest.raises(DatasetValidationError) as caught:
        validate(records)
    assert "  a.png: score is empty or not a number" in str(caught.value)
    assert "  a.png: file not found" in str(caught.value)


def test_decoded_files_are_cached_by_path_size_and_mtime(dataset, tmp_path, monkeypatch):
    (dataset / "scores.csv").write_text("file,mos\ngood.png,3\nother.png,4\n")
    decoded = []
    real_decode = validation._decode_error
    monkeypatch.setattr(
        validation, "_decode_error", lambda path: decoded.append(path.name) or real_decode(path)
    )
    cache = tmp_path / "cache"

    validate(read(dataset), cache_dir=cache)
    assert sorted(decoded) == ["good.png", "other.png"]
    decoded.clear()
    validate(read(dataset), cache_dir=cache)
    assert decoded == []

    write_image(dataset / "other.png")  # rewritten: new mtime, so decoded again
    stat = (dataset / "other.png").stat()
    os.utime(dataset / "other.png", ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    validate(read(dataset), cache_dir=cache)
    assert decoded == ["other.png"]


def test_interrupted_validation_keeps_finished_work(tmp_path, monkeypatch):
    names = [f"img{i}.png" for i in range(6)]
    for name in names:
        write_image(tmp_path / name)
    (tmp_path / "scores.csv").write_text("file,mos\n" + "".join(f"{name},3\n" for name in names))
    real_decode = validation._decode_error

    def interrupted_at_img3(path):
        if path.name == "img3.png":
            raise KeyboardInterrupt
        return real_decode(path)

    monkeypatch.setattr(validation, "_decode_error", interrupted_at_img3)
    with pytest.raises(KeyboardInterrupt):
        validate(read(tmp_path), cache_dir=tmp_path / "cache", num_workers=1)
    cached = (tmp_path / "cache" / validation.DECODED_CACHE_FILE).read_text()
    assert all(f"img{i}.png" in cached for i in range(3))

    decoded = []
    monkeypatch.setattr(
        validation, "_decode_error", lambda path: decoded.append(path.name) or real_decode(path)
    )
    validate(read(tmp_path), cache_dir=tmp_path / "cache")
    assert "img0.png" not in decoded and "img3.png" in decoded


def test_on_error_must_be_known(dataset):
    with pytest.raises(ValueError, match="on_error"):
        validate(read(dataset), on_error="ignore")
