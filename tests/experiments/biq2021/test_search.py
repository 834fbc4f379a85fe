"""The probe search script (experiments/biq2021/search.py) end to end on a tiny BIQ2021 folder and a test
backbone: one feature pass, then each solver and an averaged pair picked on validation, scored on test."""

import json

import pytest
import torch
from tests.benchmarks.conftest import write_biq2021_folder
from tests.experiments.biq2021.conftest import load_experiment, write_splits


def test_extract_then_evaluate_picks_on_validation_and_scores_the_held_out_photos(tmp_path):
    search = load_experiment("search")
    root = write_biq2021_folder(tmp_path / "biq2021", images=24)
    features = tmp_path / "test_32.pt"
    search.extract(features, "test_efficientnet", 32, str(root), ["data.num_workers=0"])
    stored = torch.load(features, weights_only=False)
    ids = sorted(stored["image_id"])
    assert ids == sorted(f"Images/ss01 ({i}).jpg" for i in range(24))
    assert stored["stats"].shape[0] == 24 and torch.isfinite(stored["stats"]).all()

    splits = write_splits(tmp_path / "splits", ids, (0, 1), train=14, val=5)
    output = tmp_path / "search.json"
    search.evaluate(splits, [str(features), f"{features}|{features}"], output, ["ridge", "kernel_ridge"])

    rows = json.loads(output.read_text())
    assert [(row["features"], row["solver"]) for row in rows] == [
        (str(features), "ridge"), (str(features), "kernel_ridge"), (f"{features}|{features}", "kernel_ridge")]
    for row in rows:
        assert [s["seed"] for s in row["splits"]] == ["seed=0", "seed=1"]
        assert all(-1 <= s[key] <= 1 for s in row["splits"] for key in ("val_srcc", "test_srcc", "test_plcc"))
    # A pair of one feature set with itself averages two identical heads: the kernel ridge row again.
    kernel, pair = rows[1], rows[2]
    for single, averaged in zip(kernel["splits"], pair["splits"], strict=True):
        assert averaged["test_srcc"] == pytest.approx(single["test_srcc"], abs=1e-9)
        assert averaged["choice"] == [single["choice"]] * 2
