import os

import pytest

from biqa.data.datasets.readers import builder as builder_module
from biqa.data.datasets.readers.builder import CaseInsensitivePaths, RecordsBuilder, SourceRow
from biqa.data.datasets.records import ScoreScale


def test_case_resolution_lists_each_folder_once(tmp_path, write_image, monkeypatch):
    for i in range(20):
        write_image(tmp_path / "Images" / f"img{i}.JPG")
    listed = []
    real_listdir = os.listdir
    monkeypatch.setattr(builder_module.os, "listdir", lambda path: listed.append(path) or real_listdir(path))

    paths = CaseInsensitivePaths(tmp_path)
    resolved = [paths.resolve(f"images/img{i}.jpg") for i in range(20)]

    assert resolved == [f"Images/img{i}.JPG" for i in range(20)]
    assert sorted(map(str, listed)) == sorted([str(tmp_path), str(tmp_path / "Images")])


def test_ambiguous_or_absent_names_stay_as_written(tmp_path, write_image):
    write_image(tmp_path / "a.png")
    write_image(tmp_path / "A.png")
    paths = CaseInsensitivePaths(tmp_path)
    assert paths.resolve("A.PNG") == "A.PNG"
    assert paths.resolve("a.png") == "a.png"
    assert paths.resolve("missing/x.png") == "missing/x.png"


def test_builder_keeps_sources_and_normalises_at_build(tmp_path, write_image):
    write_image(tmp_path / "x.png")
    builder = RecordsBuilder("demo", tmp_path)
    assert builder.add("X.png", 3.0, SourceRow("s.csv", 2)) == 0
    records = builder.build(ScoreScale(1.0, 5.0))
    assert records.records[0].image_id == "x.png"
    assert records.records[0].score == pytest.approx(0.5)
    assert records.sources == [SourceRow("s.csv", 2)]


def test_require_names_every_missing_piece(tmp_path):
    (tmp_path / "present.csv").write_text("a\n")
    builder = RecordsBuilder("demo", tmp_path)
    with pytest.raises(FileNotFoundError, match=r"missing under .*: a\.mat, b\.csv, images/.*present\.csv"):
        builder.require("a.mat", "b.csv", "present.csv", folders=["images"])
    assert builder.require("PRESENT.csv") == [tmp_path / "present.csv"]
    with pytest.raises(FileNotFoundError, match="not a folder"):
        RecordsBuilder("demo", tmp_path / "nowhere").require("a.mat")
