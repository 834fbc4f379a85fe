"""Smoke test of benchmarks/data_throughput.py on a tiny BIQ2021-layout folder (no timing asserted)."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "data_throughput.py"


def load_script():
    spec = importlib.util.spec_from_file_location("data_throughput", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_benchmark_runs_and_prints_a_table_and_a_json_line(tmp_path, capsys):
    rng = np.random.default_rng(0)
    (tmp_path / "Images").mkdir()
    rows = []
    for i in range(6):
        name = f"ss01 ({i}).jpg"
        Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(tmp_path / "Images" / name)
        rows.append(f"{name},{rng.random():.3f},,\n")
    (tmp_path / "Train (Images and MOS).csv").write_text("Image Name,MOS,,\n" + "".join(rows))

    result = load_script().main(["--root", str(tmp_path), "--images", "4", "--crops", "3", "--size", "32",
                                 "--batch-images", "2", "--workers", "0", "--rounds", "1", "--image-cache"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert json.loads(lines[-1]) == result
    assert result["images"] == 4 and result["crops_per_image"] == 3
    assert set(result["crops_per_s"]) == {"naive", "biqa_loader", "biqa_ready", "biqa_cache_loader", "biqa_cache_ready"}
    assert all(rate > 0 for rate in result["crops_per_s"].values())
    assert result["loader_ratio"] > 0 and result["ready_ratio"] > 0
    assert any(line.startswith("biqa_ready") for line in lines)
