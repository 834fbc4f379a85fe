"""hparams_search=optuna end to end: trials train, the sweeper reads each run's best validation SRCC."""

import json
import os
import subprocess
import sys

import pytest
import yaml
from tests.conftest import TINY

pytestmark = pytest.mark.slow


def test_optuna_search_runs_trials_and_reports_the_best_validation_srcc(tmp_path):
    sweep_dir = tmp_path / "sweep"
    command = [sys.executable, "-m", "biqa.cli.train", "hparams_search=optuna", "hydra.sweeper.n_trials=2",
               "hydra.sweeper.sampler.n_startup_trials=2", f"hydra.sweep.dir={sweep_dir}",
               f"paths.root_dir={tmp_path}", f"paths.cache_dir={tmp_path / 'cache'}", "test=false",
               *(o for o in TINY if not o.startswith("data.batch_size="))]  # the search picks it
    subprocess.run(command, check=True, capture_output=True, cwd=tmp_path, env={**os.environ, "OMP_NUM_THREADS": "1"})
    results = yaml.safe_load((sweep_dir / "optimization_results.yaml").read_text())
    assert set(results["best_params"]) == {"optim.lr", "optim.weight_decay", "data.batch_size"}
    trial_values = [json.loads(record.read_text())["metrics"]["val/srcc_best"] for record in sweep_dir.rglob("result.json")]
    assert len(trial_values) == 2
    assert results["best_value"] == pytest.approx(max(trial_values))


@pytest.mark.parametrize("multirun", [False, True])
def test_an_unknown_optimized_metric_fails_only_a_sweep(tmp_path, multirun):
    command = [sys.executable, "-m", "biqa.cli.train", *(["-m"] if multirun else []), "optimized_metric=val/none",
               f"hydra.run.dir={tmp_path / 'run'}", f"hydra.sweep.dir={tmp_path / 'sweep'}",
               f"paths.root_dir={tmp_path}", f"paths.cache_dir={tmp_path / 'cache'}", "test=false", *TINY]
    done = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert (done.returncode != 0) == multirun
    assert ("optimized_metric 'val/none' is not among the run's metrics" in done.stderr) == multirun
