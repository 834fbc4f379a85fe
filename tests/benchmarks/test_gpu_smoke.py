"""benchmarks/gpu_smoke.py runs its CPU path (--device cpu --tiny): every model takes mixed-precision-rule
training steps, and the script prints its table and JSON line (no timing asserted)."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from tests.reliability.conftest import cli_env

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_smoke.py"


@pytest.mark.slow
def test_every_model_takes_training_steps_and_the_script_prints_a_table_and_a_json_line(tmp_path):
    result = subprocess.run([sys.executable, str(SCRIPT), "--device", "cpu", "--tiny", "--steps", "1", "--warmup", "0",
                             "--batch-size", "2", "--threads", "1"], cwd=tmp_path, env=cli_env(), capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()
    record = json.loads(lines[-1])
    assert [row["model"] for row in record["rows"]] == ["pooled", "transformer_decoder", "lifeiqa", "dgiqa", "bfrd",
                                                        "mfenet"]
    assert all(row["images_per_s"] > 0 and row["precision"] == "32-true" for row in record["rows"])
    assert "| model | backbone | px | precision | peak memory (GiB) | train images/s |" in lines
    assert "cpu, 1 process(es) of 1 thread(s), batch 2 per process, compile=False" in lines


@pytest.mark.slow
def test_each_precision_asked_gets_its_own_row_of_the_same_model(tmp_path):
    result = subprocess.run([sys.executable, str(SCRIPT), "--device", "cpu", "--tiny", "--steps", "1", "--warmup", "0",
                             "--batch-size", "2", "--threads", "1", "--models", "dgiqa", "--precision", "32-true",
                             "bf16-mixed"], cwd=tmp_path, env=cli_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = json.loads(result.stdout.strip().splitlines()[-1])["rows"]
    assert [(row["model"], row["precision"]) for row in rows] == [("dgiqa", "32-true"), ("dgiqa", "bf16-mixed")]
    assert all(math.isfinite(row["loss"]) and row["images_per_s"] > 0 for row in rows)
