"""biqa-cost end to end: the command's model.* overrides reach the costed model."""

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow


def cost(tmp_path, *overrides: str) -> dict:
    out = tmp_path / f"cost{len(list(tmp_path.iterdir()))}.json"
    subprocess.run([sys.executable, "-m", "biqa.cli.cost", "model=pooled", "model/backbone=test_resnet",
                    "crop_size=32", "warmup=0", "repeats=1", f"json={out}", f"hydra.run.dir={tmp_path}/run",
                    *overrides], check=True, capture_output=True, cwd=tmp_path)
    (row,) = json.loads(out.read_text())
    return row


def test_cost_of_one_model_keeps_the_commands_model_overrides(tmp_path):
    linear = cost(tmp_path)
    mlp = cost(tmp_path, "model.net.hidden_dim=64")
    assert linear["backbone"] == mlp["backbone"] == "test_resnet"
    assert mlp["decoder_parameters"] > linear["decoder_parameters"]
    assert mlp["crop_size"] == 32
