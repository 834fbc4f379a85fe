import logging

import pytest

from biqa.data.datasets.readers.tid2013 import TID2013


def test_names_give_reference_type_and_level(tmp_path, write_image, write_text, caplog):
    write_text(tmp_path / "mos_with_names.txt", "5.51429 i01_01_1.bmp\n\n3.2 i25_24_5.bmp\n")
    write_image(tmp_path / "distorted_images" / "i01_01_1.bmp")
    write_image(tmp_path / "distorted_images" / "i25_24_5.bmp")
    write_image(tmp_path / "reference_images" / "I01.BMP")
    write_image(tmp_path / "reference_images" / "i25.bmp")

    with caplog.at_level(logging.WARNING):
        records = TID2013(tmp_path)()

    first, last = records.records
    assert first.image_id == "distorted_images/i01_01_1.bmp"
    assert first.reference_id == "reference_images/I01.BMP"
    assert last.reference_id == "reference_images/i25.bmp"
    assert [(r.distortion_type, r.distortion_level) for r in records.records] == [(0, 1), (23, 5)]
    assert "differ in case" not in caplog.text  # references are ids, their quirk is expected
    assert [s.row for s in records.sources] == [1, 3]
    assert first.score == pytest.approx(5.51429 / 9)
    assert len(records.distortion_types) == 24
