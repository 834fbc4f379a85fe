import pytest
from openpyxl import Workbook

from biqa.data.datasets.readers.csiq import CSIQ

ROWS = [
    (1600, 1, "noise", 1, 0.02, 0.062),
    ("boston", 3, "jpeg 2000", 3, 0.05, 0.3),
    (1600, 6, "contrast", 4, 0.04, 0.41),
]


def write_sheet(path):
    # As released: a title above the header, and the table starting in the second column.
    workbook = Workbook()
    sheet = workbook.active
    sheet.title = "all_by_image"
    sheet["B1"] = "CSIQ DMOS"
    sheet.append([None, "image", "dst_idx", "dst_type", "dst_lev", "dmos_std", "dmos"])
    for row in ROWS:
        sheet.append([None, *row])
    workbook.save(path)


@pytest.fixture
def csiq(tmp_path, write_image):
    write_image(tmp_path / "dst_imgs" / "awgn" / "1600.AWGN.1.png")
    write_image(tmp_path / "dst_imgs" / "jpeg2000" / "boston.jpeg2000.3.png")
    write_image(tmp_path / "dst_imgs" / "contrast" / "1600.contrast.4.png")
    write_image(tmp_path / "src_imgs" / "1600.png")
    write_image(tmp_path / "src_imgs" / "boston.png")
    return tmp_path


def test_reads_the_released_workbook(csiq):
    write_sheet(csiq / "csiq.DMOS.xlsx")
    records = CSIQ(csiq)()
    assert [r.image_id for r in records.records] == [
        "dst_imgs/awgn/1600.AWGN.1.png",
        "dst_imgs/jpeg2000/boston.jpeg2000.3.png",
        "dst_imgs/contrast/1600.contrast.4.png",
    ]
    assert [r.reference_id for r in records.records] == [
        "src_imgs/1600.png",
        "src_imgs/boston.png",
        "src_imgs/1600.png",
    ]
    assert [(r.distortion_type, r.distortion_level) for r in records.records] == [(0, 1), (2, 3), (5, 4)]
    assert [s.row for s in records.sources] == [3, 4, 5]
    assert records.records[0].score == pytest.approx(1 - 0.062)
    assert all(r.path.is_file() for r in records.records)


def test_reads_a_csv_export(csiq, write_text):
    lines = ["image,dst_idx,dst_type,dst_lev,dmos_std,dmos"] + [",".join(map(str, row)) for row in ROWS]
    write_text(csiq / "csiq.csv", "\n".join(lines) + "\n")
    records = CSIQ(csiq, scores_file="csiq.csv")()
    assert records.records[1].image_id == "dst_imgs/jpeg2000/boston.jpeg2000.3.png"
    assert [s.row for s in records.sources] == [2, 3, 4]
