"""Smoke test of benchmarks/trunk_cache.py on a tiny BIQ2021-layout folder (no timing asserted)."""

import json

import pytest
from tests.benchmarks.conftest import load_benchmark, write_biq2021_folder


@pytest.mark.slow
def test_benchmark_trains_an_epoch_both_ways_and_prints_a_table_and_a_json_line(tmp_path, capsys):
    write_biq2021_folder(tmp_path, images=5)
    result = load_benchmark("trunk_cache").main(["--root", str(tmp_path), "--cases", "lite0_384", "--images", "4",
                                 "--batch-size", "2", "--workers", "0", "--work", str(tmp_path / "work")])
    lines = capsys.readouterr().out.strip().splitlines()
    assert json.loads(lines[-1]) == result
    (case,) = result["cases"]
    assert case["case"] == "lite0_384" and case["images"] == 4 and case["size"] == 384
    assert case["epoch_with_s"] > 0 and case["epoch_without_s"] > 0 and case["store_build_s"] > 0
    assert any(line.startswith("lite0_384") for line in lines)
