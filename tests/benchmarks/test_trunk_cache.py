"""Smoke test of benchmarks/trunk_cache.py on a tiny BIQ2021-layout folder (no timing asserted)."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "trunk_cache.py"


def load_script():
    spec = importlib.util.spec_from_file_location("trunk_cache", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_benchmark_trains_an_epoch_both_ways_and_prints_a_table_and_a_json_line(tmp_path, capsys):
    rng = np.random.default_rng(0)
    (tmp_path / "Images").mkdir()
    rows = []
    for i in range(5):
        name = f"ss01 ({i}).jpg"
        Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(tmp_path / "Images" / name)
        rows.append(f"{name},{rng.random():.3f},,\n")
    (tmp_path / "Train (Images and MOS).csv").write_text("Image Name,MOS,,\n" + "".join(rows))

    result = load_script().main(["--root", str(tmp_path), "--cases", "lite0_384", "--images", "4",
                                 "--batch-size", "2", "--workers", "0", "--work", str(tmp_path / "work")])
    lines = capsys.readouterr().out.strip().splitlines()
    assert json.loads(lines[-1]) == result
    (case,) = result["cases"]
    assert case["case"] == "lite0_384" and case["images"] == 4 and case["size"] == 384
    assert case["epoch_with_s"] > 0 and case["epoch_without_s"] > 0 and case["store_build_s"] > 0
    assert any(line.startswith("lite0_384") for line in lines)
