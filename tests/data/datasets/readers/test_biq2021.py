import logging

import pytest

from biqa.data.datasets.readers.biq2021 import BIQ2021
from biqa.data.datasets.validation import validate

# The original header has two empty trailing columns.
TRAIN = "Image Name,MOS,,\nss01 (1798).jpg,0.2277,,\nss02 (1014).jpg,0.8160,,\nss03 (600).jpg,0.7442,,\n"
TEST = "Image Name,MOS\nss04 (7).jpg,0.5000\n"


@pytest.fixture
def biq(tmp_path, write_image, write_text):
    write_text(tmp_path / "Train (Images and MOS).csv", TRAIN)
    for name in ("ss01 (1798).jpg", "ss02 (1014).JPG", "ss03 (600).jpg", "ss04 (7).jpg"):
        write_image(tmp_path / "Images" / name)
    return tmp_path


def test_reads_training_file_and_resolves_upper_case_extension(biq, caplog):
    with caplog.at_level(logging.WARNING):
        records = BIQ2021(biq)()
    assert [r.image_id for r in records.records] == [
        "Images/ss01 (1798).jpg",
        "Images/ss02 (1014).JPG",
        "Images/ss03 (600).jpg",
    ]
    assert records.records[1].path.is_file()
    assert "'Images/ss02 (1014).jpg' -> 'Images/ss02 (1014).JPG'" in caplog.text
    assert records.records[0].score == pytest.approx(0.2277)
    assert records.official_splits == {"train": [0, 1, 2]}
    assert [str(source) for source in records.sources][0] == "Train (Images and MOS).csv, row 2"
    assert len(validate(records)) == 3


def test_test_file_adds_the_official_test_split(biq, write_text):
    write_text(biq / "Test (Images and MOS).csv", TEST)
    records = BIQ2021(biq)()
    assert records.official_splits == {"train": [0, 1, 2], "test": [3]}
    assert records.sources[3].file == "Test (Images and MOS).csv"
    assert records.sources[3].row == 2


def test_missing_layout_is_named_in_one_error(tmp_path):
    (tmp_path / "somethingelse").mkdir()
    with pytest.raises(FileNotFoundError) as error:
        BIQ2021(tmp_path)()
    message = str(error.value)
    assert "Train (Images and MOS).csv" in message and "Images/" in message and "somethingelse" in message
