"""The Slurm launcher's code path (submitit's local executor) and W&B offline runs, one per job."""

import json
import os

import pytest
from hydra.core.global_hydra import GlobalHydra
from tests.study.conftest import STUDY_TINY

from biqa.study.launch import prepare, run


@pytest.fixture
def tiny_args(tmp_path, tmp_path_factory):
    yield ["study=smoke", "study.seeds=[0]", f"paths.root_dir={tmp_path}",
           f"paths.cache_dir={tmp_path_factory.getbasetemp() / 'sweep_cache'}", *STUDY_TINY]
    GlobalHydra.instance().clear()


@pytest.mark.slow
def test_slurm_path_runs_through_submitit_local(tiny_args):
    study = prepare([*tiny_args, "study.variants={linear: ['model=pooled']}", "hydra/launcher=slurm_local_test"])
    study.jobs = study.jobs[:1]
    assert run(study) == {"launched": 1, "finished": 1}
    folder = study.study_dir / "linear/synthetic/seed=0"
    record = json.loads((folder / "result.json").read_text())
    assert record["config"]["study_job"]["study"] == study.study_id
    submitit_logs = list((study.study_dir / ".submitit").rglob("*_result.pkl"))
    assert len(submitit_logs) == 1, "the job ran in a submitit subprocess"


@pytest.mark.slow
def test_wandb_offline_one_run_per_job_grouped_by_study_in_separate_folders(tiny_args, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    study = prepare([*tiny_args, "logger=wandb"])
    assert study.study_id == "smoke-" + study.study_id.split("-", 1)[1]  # logger=wandb is not part of the id
    assert run(study)["finished"] == 2
    folders = [study.study_dir / job.name for job in study.jobs]
    assert len(set(folders)) == 2
    run_ids = set()
    for job, folder in zip(study.jobs, folders, strict=True):
        runs = list((folder / "wandb").glob("offline-run-*"))
        assert len(runs) == 1, f"{job.name}: {runs}"
        run_ids.add(runs[0].name.rsplit("-", 1)[1])
        assert (folder / "test_scatter.png").exists()
        config = json.loads((folder / "result.json").read_text())["config"]
        assert config["logger"]["wandb"]["group"] == study.study_id
        assert config["logger"]["wandb"]["job_type"] == job.variant
        assert f"split:{job.seed}" in config["logger"]["wandb"]["tags"]
        assert "model:pooled" in config["logger"]["wandb"]["tags"]
    assert len(run_ids) == 2
    assert os.environ["WANDB_MODE"] == "offline"


@pytest.mark.parametrize("extra, error", [
    ([], None),
    (["hydra.launcher.gpus_per_node=4", "trainer=ddp", "trainer.devices=4"], None),
    (["hydra.launcher.gpus_per_node=4", "trainer=ddp"], "trainer.devices=4"),
    (["hydra.launcher.nodes=2", "trainer.devices=1"], "trainer.num_nodes=2"),
])
def test_slurm_config_has_one_task_per_device(tmp_path, extra, error):
    args = ["study=smoke", f"paths.root_dir={tmp_path}", "hydra/launcher=slurm", *extra]
    if error:
        with pytest.raises(ValueError, match=error):
            prepare(args)
        return
    launcher = prepare(args).config.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert launcher.tasks_per_node == launcher.gpus_per_node
    assert {"partition", "timeout_min", "array_parallelism", "cpus_per_task", "setup"} <= set(launcher)
