import pytest

from biqa.data.datasets.readers.custom_csv import CustomCSV


def test_columns_range_and_direction_from_config(tmp_path, write_text):
    write_text(tmp_path / "scores.csv", "file,ref,dmos\nsub/a.png,r1,1.5\nsub/b.png,r2,4.0\n")
    (tmp_path / "imgs").mkdir()
    records = CustomCSV(
        tmp_path,
        csv_file="scores.csv",
        path_column="file",
        score_column="dmos",
        score_range=[1, 5],
        higher_is_better=False,
        image_folder="imgs",
        reference_column="ref",
        name="mine",
    )()
    assert records.name == "mine"
    assert [r.image_id for r in records.records] == ["imgs/sub/a.png", "imgs/sub/b.png"]
    assert [r.reference_id for r in records.records] == ["r1", "r2"]
    assert records.records[0].score == pytest.approx(1 - 0.5 / 4)
    assert records.scale.name == "dmos" and not records.scale.higher_is_better


def test_unknown_column_lists_the_header(tmp_path, write_text):
    write_text(tmp_path / "scores.csv", "file,mos\na.png,3\n")
    reader = CustomCSV(
        tmp_path, csv_file="scores.csv", path_column="path", score_column="mos", score_range=[1, 5]
    )
    with pytest.raises(ValueError, match=r"no column named 'path'.*\['file', 'mos'\]"):
        reader()


def test_range_must_be_increasing(tmp_path):
    with pytest.raises(ValueError, match="low < high"):
        CustomCSV(tmp_path, csv_file="s.csv", path_column="f", score_column="s", score_range=[5, 1])
