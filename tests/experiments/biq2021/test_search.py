"""The probe search script (experiments/biq2021/search.py) end to end on a tiny BIQ2021 folder and a test
backbone: one feature pass, then each solver and an averaged pair picked on validation, scored on test."""

import importlib.util
import json
from pathlib import Path

import pytest
import torch
from tests.benchmarks.conftest import write_biq2021_folder

SCRIPT = Path(__file__).resolve().parents[3] / "experiments" / "biq2021" / "search.py"


@pytest.fixture(scope="module")
def search():
    spec = importlib.util.spec_from_file_location("biq2021_search", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_extract_then_evaluate_picks_on_validation_and_scores_the_held_out_photos(search, tmp_path):
    root = write_biq2021_folder(tmp_path / "biq2021", images=24)
    features = tmp_path / "test_32.pt"
    search.extract(features, "test_efficientnet", 32, str(root), ["data.num_workers=0"])
    stored = torch.load(features, weights_only=False)
    ids = sorted(stored["image_id"])
    assert ids == sorted(f"Images/ss01 ({i}).jpg" for i in range(24))
    assert stored["stats"].shape[0] == 24 and torch.isfinite(stored["stats"]).all()

    splits = tmp_path / "splits"
    for seed in (0, 1):
        order = torch.randperm(24, generator=torch.Generator().manual_seed(seed)).tolist()
        part = {"train": order[:14], "val": order[14:19], "test": order[19:]}
        (splits / f"seed={seed}").mkdir(parents=True)
        (splits / f"seed={seed}" / "split.json").write_text(
            json.dumps({name: [ids[i] for i in rows] for name, rows in part.items()}))
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
