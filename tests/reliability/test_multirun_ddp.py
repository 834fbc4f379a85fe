"""DDP inside a Hydra multirun: Lightning's own launcher would re-run the sweep's command line in every extra
rank, so such a run is refused before anything starts, with the fixes named; processes that Slurm (or
torchrun) starts are joined by Lightning, and those runs pass."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import read_write
from tests.reliability.conftest import RUN, run_cli

from biqa.checks import ConfigError, check_config


def multirun_config(compose_config, overrides: list[str]):
    cfg = compose_config("train", [*RUN, *overrides])
    with read_write(cfg.hydra):
        cfg.hydra.mode = RunMode.MULTIRUN
    HydraConfig.instance().set_config(cfg)
    return cfg


def test_lightnings_ddp_launcher_inside_a_multirun_is_refused_with_the_fixes(compose_config, monkeypatch):
    for name in ("SLURM_NTASKS", "SLURM_JOB_NAME", "TORCHELASTIC_RUN_ID"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConfigError) as caught:
        check_config(multirun_config(compose_config, ["trainer=ddp_cpu"]))
    message = str(caught.value)
    assert "trainer.strategy=ddp with trainer.devices=2 inside a multirun" in message
    assert "without -m" in message and "hydra.launcher.tasks_per_node" in message


@pytest.mark.parametrize("overrides", [["trainer=cpu"], ["trainer=ddp_cpu", "trainer.devices=1"],
                                       ["trainer=ddp_cpu", "trainer.strategy=ddp_spawn"]])
def test_a_multirun_of_single_process_or_spawned_jobs_passes(compose_config, overrides):
    check_config(multirun_config(compose_config, overrides))


def test_ranks_that_slurm_starts_are_joined_so_the_multirun_passes(compose_config, monkeypatch):
    monkeypatch.setenv("SLURM_NTASKS", "2")
    monkeypatch.setenv("SLURM_JOB_NAME", "biqa")
    check_config(multirun_config(compose_config, ["trainer=ddp_cpu"]))


def test_a_single_ddp_run_passes(compose_config):
    check_config(compose_config("train", [*RUN, "trainer=ddp_cpu"]))


@pytest.mark.slow
def test_biqa_train_multirun_with_ddp_stops_before_any_job_starts(tmp_path):
    logs = tmp_path / "logs"
    result = run_cli("train", "-m", "seed=0,1", "trainer=ddp_cpu", f"paths.log_dir={logs}", *RUN, check=False)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "inside a multirun" in output and "without -m" in output
    assert "Initializing distributed" not in output and "Starting with 2 processes" not in output
    assert not list(Path(logs).rglob("*.ckpt")) and not list(Path(logs).rglob("result.json"))
