import pytest

from biqa.data.datasets.readers.pipal import PIPAL


@pytest.fixture
def pipal(tmp_path, write_text):
    write_text(tmp_path / "Train_Label" / "A0001.txt", "A0001_00_00.bmp,1520.0648\nA0001_01_03.bmp,1100.0\n")
    write_text(tmp_path / "Train_Label" / "A0002.txt", "A0002_06_26.bmp,1700.0\n")
    (tmp_path / "Train_Dist").mkdir()
    return tmp_path


def test_reference_from_label_file_and_observed_range(pipal):
    records = PIPAL(pipal)()
    assert [r.image_id for r in records.records] == [
        "Train_Dist/A0001_00_00.bmp",
        "Train_Dist/A0001_01_03.bmp",
        "Train_Dist/A0002_06_26.bmp",
    ]
    assert [r.reference_id for r in records.records] == ["Train_Ref/A0001.bmp"] * 2 + ["Train_Ref/A0002.bmp"]
    assert (records.scale.low, records.scale.high) == (1100.0, 1700.0)
    assert [r.score for r in records.records] == pytest.approx([(1520.0648 - 1100) / 600, 0.0, 1.0])
    assert str(records.sources[2]) == "Train_Label/A0002.txt, row 1"


def test_explicit_range(pipal):
    records = PIPAL(pipal, score_range=(1000.0, 2000.0))()
    assert records.records[1].score == pytest.approx(0.1)
