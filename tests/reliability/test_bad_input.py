"""The bad-input corpus (tests/reliability/corpus.py) against what docs/bad_input.md promises: every case
either converts as documented or stops with an error that names the file (and its row in the score file);
`biqa-predict` scores the good files of a folder and reports the bad ones without stopping."""

from __future__ import annotations

import csv
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from tests.reliability.conftest import run_cli
from tests.reliability.corpus import IMAGE_CASES, good, write_corpus

from biqa.data.datasets.readers.custom_csv import CustomCSV
from biqa.data.datasets.records import ImageRecord
from biqa.data.datasets.validation import DatasetValidationError, validate
from biqa.data.loading.crops import CropDataset, CropSpec, ImageDecodeError, load_rgb
from biqa.run_folder import SKIPPED_FILE

DECODABLE = [case for case in IMAGE_CASES if case.error is None]
BROKEN = [case for case in IMAGE_CASES if case.error is not None]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict[str, Path]:
    return write_corpus(tmp_path_factory.mktemp("corpus"))


# -- decoding -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("case", IMAGE_CASES, ids=lambda case: case.file)
def test_every_image_case_converts_or_names_the_file(corpus, case):
    path = corpus[case.name]
    if case.error is not None:
        with pytest.raises(ImageDecodeError) as caught:
            load_rgb(path)
        assert str(caught.value).startswith(f"{path}: {case.error}")
        return
    image = load_rgb(path)
    assert image.mode == "RGB"
    pixels = np.asarray(image)
    assert pixels.dtype == np.uint8
    case.check(pixels)


def records_of(paths: list[Path]) -> list[ImageRecord]:
    return [ImageRecord(path=p, score=0.5, raw_score=0.5, image_id=p.name) for p in paths]


def test_training_crops_come_from_every_decodable_case(corpus):
    spec = CropSpec(size=32, count=2, hflip=True)
    dataset = CropDataset(records_of([corpus[case.name] for case in DECODABLE]), list(range(len(DECODABLE))),
                          spec, train=True)
    for position in range(len(DECODABLE)):
        item = dataset[(position, 3)]
        assert item["images"].shape == (2, 3, 32, 32) and item["images"].dtype == torch.uint8


def test_small_images_are_upscaled_or_rejected_as_configured(corpus):
    small = records_of([corpus["image smaller than the crop (16x20, crop 32)"]])
    upscaled = CropDataset(small, [0], CropSpec(size=32), train=False).load_pixels(small[0])
    assert upscaled.shape == (40, 32, 3)  # short side 16 -> 32, aspect ratio kept
    for train, key in ((True, "train_crops"), (False, "eval_crops")):
        rejecting = CropDataset(small, [0], CropSpec(size=32, small_images="error"), train=train)
        with pytest.raises(ImageDecodeError) as caught:
            rejecting[0]
        assert str(caught.value) == (f"{small[0].path}: 16x20 is smaller than the 32px crop; set "
                                     f"data.{key}.small_images=upscale or lower data.{key}.size")


# -- up-front validation of a dataset -------------------------------------------------------------------------

def test_validation_names_every_broken_file_with_its_row_and_skip_keeps_the_rest(corpus, tmp_path):
    root = next(iter(corpus.values())).parent
    rows = "".join(f"{case.file},3.0\n" for case in IMAGE_CASES)
    (root / "scores.csv").write_text("file,mos\n" + rows)
    records = CustomCSV(root, "scores.csv", "file", "mos", [1, 5])()

    with pytest.raises(DatasetValidationError) as caught:
        validate(records, report_dir=tmp_path / "run")
    message = str(caught.value)
    for row, case in enumerate(IMAGE_CASES, start=2):
        mentioned = f"scores.csv, row {row}: {case.file}:" in message
        assert mentioned == (case.error is not None), case.file
    assert f"{len(BROKEN)} of {len(IMAGE_CASES)} records have problems" in message

    kept = validate(records, on_error="skip", report_dir=tmp_path / "run")
    assert [r.image_id for r in kept.records] == [case.file for case in DECODABLE]
    with (tmp_path / "run" / SKIPPED_FILE).open(newline="") as file:
        assert [row["file"] for row in csv.DictReader(file)] == [case.file for case in BROKEN]


# -- score files ---------------------------------------------------------------------------------------------

# (id, CSV text with images a.png, b.png, c.png on disk, what happens). Line 1 is the header, so "row N" is
# the line an editor shows.
SCORE_FILES = [
    ("nan_score", "file,mos\na.png,3\nb.png,nan\n", "scores.csv, row 3: b.png: score is empty or not a number"),
    ("empty_score", "file,mos\na.png,3\nb.png,\n", "scores.csv, row 3: b.png: score is empty or not a number"),
    ("text_score", "file,mos\na.png,good\n", "scores.csv, row 2: a.png: score is empty or not a number"),
    ("decimal_comma", 'file,mos\na.png,"3,5"\n', "scores.csv, row 2: a.png: score is empty or not a number"),
    ("infinite_score", "file,mos\na.png,inf\n", "scores.csv, row 2: a.png: score is infinite (inf)"),
    ("out_of_range", "file,mos\na.png,3\nb.png,7.5\n",
     "scores.csv, row 3: b.png: score 7.5 is outside the declared range [1, 5]"),
    ("duplicate_rows", "file,mos\na.png,3\nb.png,2\na.png,4\n",
     "scores.csv, row 4: a.png: duplicate of the image already listed at scores.csv, row 2"),
    ("missing_image", "file,mos\na.png,3\nd.png,2\n", "scores.csv, row 3: d.png: file not found"),
    ("blank_lines_keep_line_numbers", "file,mos\n\na.png,3\n\nb.png,9\n",
     "scores.csv, row 5: b.png: score 9 is outside the declared range [1, 5]"),
    ("wrong_column_names", "image,score\na.png,3\n", "scores.csv: no column named 'file'; its header is ['image', 'score']"),
    ("empty_file", "", "scores.csv: the file is empty"),
    ("utf8_bom", "\ufefffile,mos\na.png,3\nb.png,2\n", ["a.png", "b.png"]),
    ("extra_empty_columns", "file,mos,,\na.png,3,,\nb.png,2,,\n", ["a.png", "b.png"]),
    ("crlf_quotes_and_spaces", 'file,mos\r\n"a.png" , 3 \r\n b.png,2.5\r\n', ["a.png", "b.png"]),
    ("file_name_case", "file,mos\nA.PNG,3\nB.png,2\n", ["a.png", "b.png"]),
]


@pytest.mark.parametrize(("text", "expected"), [case[1:] for case in SCORE_FILES], ids=[c[0] for c in SCORE_FILES])
def test_score_file_cases(tmp_path, text, expected):
    for name in ("a.png", "b.png", "c.png"):
        good(tmp_path / name)
    (tmp_path / "scores.csv").write_text(text, encoding="utf-8", newline="")
    reader = CustomCSV(tmp_path, "scores.csv", "file", "mos", [1, 5])
    if isinstance(expected, list):
        records = validate(reader())
        assert [r.image_id for r in records.records] == expected
        assert all(r.path.is_file() and math.isfinite(r.score) for r in records.records)
        return
    with pytest.raises(ValueError, match=re.escape(expected)):
        validate(reader())


# -- scoring a folder -----------------------------------------------------------------------------------------

@pytest.mark.slow
def test_biqa_predict_scores_the_good_files_and_reports_the_bad_ones(tmp_path):
    folder = tmp_path / "photos"
    paths = write_corpus(folder)
    paths["missing file"].symlink_to(folder / "deleted.png")  # a link whose target is gone
    (folder / "notes.txt").write_text("not an image suffix: not listed")
    output = tmp_path / "scores.csv"
    result = run_cli("predict", f"input_dir={folder}", f"output={output}", "model/backbone=test_efficientnet",
                     "crops.size=32", "crops.count=2", "batch_size=4", "num_workers=2")
    rows = {row["image"]: row for row in csv.DictReader(output.open())}
    assert set(rows) == {case.file for case in IMAGE_CASES}
    for case in DECODABLE:
        assert math.isfinite(float(rows[case.file]["score"])) and rows[case.file]["error"] == "", case.file
    for case in BROKEN:
        assert rows[case.file]["score"] == "" and case.error in rows[case.file]["error"], case.file
        assert rows[case.file]["error"] in result.stdout
    assert f"scored {len(DECODABLE)} of {len(IMAGE_CASES)} images" in result.stdout
