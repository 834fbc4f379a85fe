"""Per-distortion-type and per-level SRCC/PLCC of a study's runs: groups, medians over splits, heatmap."""

import math

import numpy as np
import pandas as pd
import pytest

from biqa.study.per_distortion import group_correlations, heatmap, median_table, per_distortion


def predictions(flip_blur: bool) -> pd.DataFrame:
    """Blur ordered right (or reversed), noise ordered right; levels 1-3 across both types."""
    score = np.array([0.9, 0.6, 0.3, 0.8, 0.5, 0.2])
    prediction = score.copy()
    if flip_blur:
        prediction[:3] = prediction[:3][::-1]
    return pd.DataFrame({"image": [f"i{n}" for n in range(6)], "score": score, "prediction": prediction,
                         "distortion_type": ["blur"] * 3 + ["noise"] * 3, "distortion_level": [1, 2, 3] * 2})


def test_correlations_per_type_and_per_level():
    table = group_correlations(predictions(flip_blur=True)).set_index(["group", "label"])
    assert table.loc[("type", "blur"), "srcc"] == pytest.approx(-1.0)
    assert table.loc[("type", "noise"), "srcc"] == pytest.approx(1.0)
    assert table.loc[("type", "noise"), "plcc"] == pytest.approx(1.0)
    assert table.loc[("type", "blur"), "n"] == 3
    # Two images per level are fewer than a correlation needs.
    assert set(table.loc["level"].index) == {"1", "2", "3"} and math.isnan(table.loc[("level", "1"), "srcc"])


def test_a_dataset_without_labels_gets_correlations_per_mos_band():
    rng = np.random.default_rng(0)
    score = rng.random(50)
    prediction = score.copy()
    worst = score <= np.quantile(score, 0.2)
    prediction[worst] = -prediction[worst]  # the worst fifth ordered backwards, the rest right
    plain = pd.DataFrame({"image": [f"i{n}" for n in range(50)], "score": score, "prediction": prediction})
    table = group_correlations(plain).set_index(["group", "label"])
    assert list(table.index) == [("mos_band", f"MOS {band}/5") for band in range(1, 6)]
    assert (table["n"] == 10).all()
    assert table.loc[("mos_band", "MOS 1/5"), "srcc"] == pytest.approx(-1.0)
    assert table.loc[("mos_band", "MOS 5/5"), "srcc"] == pytest.approx(1.0)


def test_median_over_splits_per_variant_in_study_order_and_heatmap(tmp_path):
    tables = {("good", 0): predictions(False), ("good", 1): predictions(False), ("bad", 0): predictions(True),
              ("bad", 1): predictions(False), ("bad", 2): predictions(True)}
    runs = pd.DataFrame([{"row": v, "dataset": "synthetic", "seed": s, "folder": f"{v}{s}"} for v, s in tables])
    long = per_distortion(runs, lambda folder: tables[(folder[:-1], int(folder[-1]))])
    assert len(long) == 5 * 5  # 2 types + 3 levels per run
    srcc = median_table(long, "type", "srcc", order=["good", "bad"])
    assert list(srcc.index.get_level_values("variant")) == ["good", "bad"]
    assert srcc.loc[("synthetic", "bad"), "blur"] == pytest.approx(-1.0)
    assert srcc.loc[("synthetic", "good"), "blur"] == pytest.approx(1.0)
    png = heatmap({"SRCC per type": srcc, "per level": median_table(long, "level", "srcc", ["good", "bad"])},
                  tmp_path / "per_distortion.png", "test")
    assert png.exists() and png.stat().st_size > 1000
