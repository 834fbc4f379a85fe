import pytest

from biqa.data.datasets.readers.kadid10k import KADID10k


def test_labels_come_from_names(tmp_path, write_image, write_text):
    write_text(
        tmp_path / "dmos.csv",
        "dist_img,ref_img,dmos,var\nI01_01_01.png,I01.png,4.57,0.496\nI81_25_05.png,I81.png,1.2,0.3\n",
    )
    for name in ("I01_01_01.png", "I81_25_05.png", "I01.png", "I81.png"):
        write_image(tmp_path / "images" / name)

    records = KADID10k(tmp_path)()

    first, last = records.records
    assert first.image_id == "images/I01_01_01.png"
    assert (first.reference_id, first.distortion_type, first.distortion_level) == ("images/I01.png", 0, 1)
    assert (last.reference_id, last.distortion_type, last.distortion_level) == ("images/I81.png", 24, 5)
    assert len(records.distortion_types) == 25
    assert records.distortion_types[last.distortion_type] == "contrast_change"
    # The column is called dmos but the scale is 1-5 with higher better.
    assert first.score == pytest.approx((4.57 - 1) / 4)
    assert records.scale.higher_is_better
    assert records.has_references and records.has_distortion_labels
