import numpy as np
import pytest
from scipy.io import savemat

from biqa.data.datasets.readers.livec import LIVEChallenge


def cell_array(names):
    cells = np.empty((len(names), 1), dtype=object)
    for i, name in enumerate(names):
        cells[i, 0] = name
    return cells


def test_drops_the_seven_study_training_images(tmp_path, write_image):
    names = [f"t{i}.bmp" for i in range(1, 8)] + ["3.bmp", "1000.JPG"]
    scores = np.array([[50.0] * 7 + [63.9, 25.5]])
    (tmp_path / "Data").mkdir()
    savemat(tmp_path / "Data" / "AllImages_release.mat", {"AllImages_release": cell_array(names)})
    savemat(tmp_path / "Data" / "AllMOS_release.mat", {"AllMOS_release": scores})
    for name in ("3.bmp", "1000.JPG"):
        write_image(tmp_path / "Images" / name)

    records = LIVEChallenge(tmp_path)()

    assert [r.image_id for r in records.records] == ["Images/3.bmp", "Images/1000.JPG"]
    assert [r.raw_score for r in records.records] == pytest.approx([63.9, 25.5])
    assert records.records[0].score == pytest.approx(0.639)
    assert [source.row for source in records.sources] == [8, 9]
    assert records.sources[0].file == "Data/AllMOS_release.mat"


def test_arrays_of_different_lengths_are_refused(tmp_path):
    (tmp_path / "Data").mkdir()
    (tmp_path / "Images").mkdir()
    savemat(tmp_path / "Data" / "AllImages_release.mat", {"AllImages_release": cell_array(["a.bmp"] * 9)})
    savemat(tmp_path / "Data" / "AllMOS_release.mat", {"AllMOS_release": np.ones((1, 8))})
    with pytest.raises(ValueError, match="9 images but .* 8 scores"):
        LIVEChallenge(tmp_path)()
