import pytest

from biqa.data.datasets.readers.flive import FLIVE


@pytest.fixture
def flive(tmp_path, write_image, write_text):
    names = ["voc_emotic_ava/a.jpg", "EE371R/b.jpg", "blur_dataset/c.jpg", "AVA__149.jpg"]
    write_text(
        tmp_path / "labels_image.csv",
        "name,mos\n" + "".join(f"{n},{60 + i}.5\n" for i, n in enumerate(names)),
    )
    for name in names:
        write_image(tmp_path / name)
    return tmp_path


def test_reads_image_labels(flive):
    records = FLIVE(flive)()
    assert [r.image_id for r in records.records][:2] == ["voc_emotic_ava/a.jpg", "EE371R/b.jpg"]
    assert records.records[1].raw_score == pytest.approx(61.5)
    assert records.records[1].score == pytest.approx(0.615)
    assert records.official_splits == {}


def test_official_split_lists(flive, write_text):
    write_text(flive / "labels640.csv", "name_image,mos_image\nblur_dataset/c.jpg,62.5\n")
    write_text(
        flive / "labels=640_padded.csv",
        "name_image,mos_image,is_valid\nvoc_emotic_ava/a.jpg,60.5,False\nEE371R/b.jpg,61.5,True\n",
    )
    assert FLIVE(flive)().official_splits == {"test": [2], "val": [1], "train": [0, 3]}
