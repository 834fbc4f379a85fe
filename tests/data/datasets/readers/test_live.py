import numpy as np
import pytest
from scipy.io import savemat

from biqa.data.datasets.readers.live import FOLDERS, LIVE

ENTRIES = sum(count for _, count in FOLDERS)  # 982


def cell_row(names):
    cells = np.empty((1, len(names)), dtype=object)
    for i, name in enumerate(names):
        cells[0, i] = name
    return cells


@pytest.fixture
def live(tmp_path):
    # The first image of every folder is a copy of its reference (orgs == 1).
    originals = np.zeros((1, ENTRIES))
    start = 0
    for _, count in FOLDERS:
        originals[0, start] = 1
        start += count
    dmos = np.linspace(0.0, 98.0, ENTRIES)[None, :]
    savemat(tmp_path / "dmos.mat", {"dmos": dmos, "orgs": originals})
    savemat(
        tmp_path / "dmos_realigned.mat",
        {"dmos_new": dmos / 2, "orgs": originals, "dmos_std": np.ones((1, ENTRIES))},
    )
    references = [("bikes.bmp", "parrots.bmp")[i % 2] for i in range(ENTRIES)]
    savemat(tmp_path / "refnames_all.mat", {"refnames_all": cell_row(references)})
    for folder, _ in FOLDERS:
        (tmp_path / folder).mkdir()
    return tmp_path


def test_drops_references_and_numbers_images_per_folder(live):
    records = LIVE(live)()
    assert len(records) == ENTRIES - len(FOLDERS)
    ids = [r.image_id for r in records.records]
    assert ids[:2] == ["jp2k/img2.bmp", "jp2k/img3.bmp"]
    assert "jp2k/img227.bmp" in ids and "jp2k/img228.bmp" not in ids
    assert ids[226] == "jpeg/img2.bmp"
    assert ids[-1] == "fastfading/img174.bmp"
    assert [s.row for s in records.sources][:2] == [2, 3] and records.sources[-1].row == ENTRIES
    assert records.sources[226].row == 229  # entry 228 is jpeg/img1, a reference copy
    assert records.distortion_types[records.records[226].distortion_type] == "jpeg"
    assert records.records[0].reference_id == "refimgs/parrots.bmp"


def test_dmos_is_lower_better(live):
    records = LIVE(live)()
    record = records.records[0]
    assert record.raw_score == pytest.approx(98.0 / (ENTRIES - 1))
    assert record.score == pytest.approx(1 - record.raw_score / 100)
    assert not records.scale.higher_is_better


def test_realigned_scores(live):
    plain, realigned = LIVE(live)(), LIVE(live, realigned=True)()
    assert realigned.records[5].raw_score == pytest.approx(plain.records[5].raw_score / 2)
    assert realigned.sources[5].file == "dmos_realigned.mat"


def test_wrong_array_length_is_refused(live):
    savemat(live / "dmos.mat", {"dmos": np.ones((1, 981)), "orgs": np.zeros((1, 981))})
    with pytest.raises(ValueError, match="982 entries"):
        LIVE(live)()
