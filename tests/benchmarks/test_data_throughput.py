"""Smoke test of benchmarks/data_throughput.py on a tiny BIQ2021-layout folder (no timing asserted)."""

import json

import pytest
from tests.benchmarks.conftest import load_benchmark, write_biq2021_folder


@pytest.mark.slow
def test_benchmark_runs_and_prints_a_table_and_a_json_line(tmp_path, capsys):
    write_biq2021_folder(tmp_path, images=6)
    result = load_benchmark("data_throughput").main(["--root", str(tmp_path), "--images", "4", "--crops", "3", "--size", "32",
                                 "--batch-images", "2", "--workers", "0", "--rounds", "1", "--image-cache"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert json.loads(lines[-1]) == result
    assert result["images"] == 4 and result["crops_per_image"] == 3
    assert set(result["crops_per_s"]) == {"naive", "biqa_loader", "biqa_ready", "biqa_cache_loader", "biqa_cache_ready"}
    assert all(rate > 0 for rate in result["crops_per_s"].values())
    assert result["loader_ratio"] > 0 and result["ready_ratio"] > 0
    assert any(line.startswith("biqa_ready") for line in lines)
