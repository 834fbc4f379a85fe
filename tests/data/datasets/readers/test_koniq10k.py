import pytest

from biqa.data.datasets.readers.koniq10k import KonIQ10k

SCORES = (
    "image_name,c1,c2,c3,c4,c5,c_total,MOS,SD,MOS_zscore\n"
    "10004473376.jpg,0,0,25,73,7,105,3.828571,0.527,77.383\n"
    "10007357496.jpg,0,3,45,47,1,96,3.479167,0.580,68.052\n"
    "10008004183.jpg,1,0,21,86,3,111,3.810811,0.519,75.912\n"
)
SETS = (
    "image_name,c1,c2,c3,c4,c5,c_total,MOS,SD,MOS_zscore,set\n"
    "10004473376.jpg,0,0,25,73,7,105,3.828571,0.527,77.383,training\n"
    "10007357496.jpg,0,3,45,47,1,96,3.479167,0.580,68.052,test\n"
    "10008004183.jpg,1,0,21,86,3,111,3.810811,0.519,75.912,validation\n"
)


@pytest.fixture
def koniq(tmp_path, write_image, write_text):
    write_text(tmp_path / "koniq10k_scores_and_distributions.csv", SCORES)
    for folder in ("512x384", "1024x768"):
        for name in ("10004473376.jpg", "10007357496.jpg", "10008004183.jpg"):
            write_image(tmp_path / folder / name)
    return tmp_path


def test_reads_zscores_and_keeps_rows(koniq):
    records = KonIQ10k(koniq)()
    assert [r.image_id for r in records.records] == [
        "512x384/10004473376.jpg",
        "512x384/10007357496.jpg",
        "512x384/10008004183.jpg",
    ]
    assert records.records[0].raw_score == pytest.approx(77.383)
    assert records.records[0].score == pytest.approx(0.77383)
    assert (records.scale.low, records.scale.high, records.scale.higher_is_better) == (0.0, 100.0, True)
    assert [source.row for source in records.sources] == [2, 3, 4]
    assert records.records[1].path == koniq / "512x384" / "10007357496.jpg"
    assert records.official_splits == {}


def test_mos_column_and_large_images(koniq):
    records = KonIQ10k(koniq, image_folder="1024x768", score_column="MOS")()
    assert records.records[1].image_id == "1024x768/10007357496.jpg"
    assert records.records[1].raw_score == pytest.approx(3.479167)
    assert records.records[1].score == pytest.approx((3.479167 - 1) / 4)


def test_official_split_from_sets_file(koniq, write_text):
    write_text(koniq / "koniq10k_distributions_sets.csv", SETS)
    assert KonIQ10k(koniq)().official_splits == {"train": [0], "val": [2], "test": [1]}


def test_unknown_score_column_is_refused(koniq):
    with pytest.raises(ValueError, match="MOS_zscore"):
        KonIQ10k(koniq, score_column="mos_z")
