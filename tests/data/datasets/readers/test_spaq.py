import math

import pandas as pd
import pytest

from biqa.data.datasets.readers.spaq import SPAQ


def test_reads_the_annotation_workbook(tmp_path, write_image):
    (tmp_path / "Annotations").mkdir()
    table = pd.DataFrame(
        {
            "Image name": ["00001.png", "00002.png", "00003.png"],
            "MOS": [42.5, 71.0, None],
            "Brightness": [40, 50, 60],
            "Colorfulness": [1, 2, 3],
            "Contrast": [1, 2, 3],
            "Noisiness": [1, 2, 3],
            "Sharpness": [1, 2, 3],
        }
    )
    table.to_excel(tmp_path / "Annotations" / "MOS and Image attribute scores.xlsx", index=False)
    for name in table["Image name"]:
        write_image(tmp_path / "TestImage" / name)

    records = SPAQ(tmp_path)()

    assert [r.image_id for r in records.records] == [
        "TestImage/00001.png",
        "TestImage/00002.png",
        "TestImage/00003.png",
    ]
    assert records.records[1].score == pytest.approx(0.71)
    assert math.isnan(records.records[2].raw_score)
    # Sheet rows: the header is row 1.
    assert [source.row for source in records.sources] == [2, 3, 4]


def test_resized_copy_folder(tmp_path, write_image):
    (tmp_path / "Annotations").mkdir()
    pd.DataFrame({"Image name": ["00001.png"], "MOS": [42.5]}).to_excel(
        tmp_path / "Annotations" / "MOS and Image attribute scores.xlsx", index=False
    )
    write_image(tmp_path / "TestImage512" / "00001.png")
    assert SPAQ(tmp_path, image_folder="TestImage512")().records[0].image_id == "TestImage512/00001.png"
