"""Studies and plain multiruns through Hydra's own sweeper/launcher/callback interfaces: the Slurm launcher's
code path (submitit's local executor), and W&B offline runs, one per job, read back from their run files."""

import json
import os

import pytest
from hydra.core.global_hydra import GlobalHydra
from tests.study.conftest import STUDY_TINY
from tests.wandb_runs import offline_runs

from biqa.cli.sweep import main, run_train_multirun
from biqa.study.launch import load


@pytest.fixture
def tiny_args(tmp_path, tmp_path_factory):
    yield ["study=smoke", "study.seeds=[0]", f"paths.root_dir={tmp_path}",
           f"paths.cache_dir={tmp_path_factory.getbasetemp() / 'sweep_cache'}", *STUDY_TINY]
    GlobalHydra.instance().clear()


@pytest.fixture
def wandb_offline(monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")


@pytest.mark.slow
def test_slurm_path_runs_through_submitit_local(tiny_args):
    args = [*tiny_args, "~study.variants.mlp", "hydra/launcher=slurm_local_test"]
    assert main(args) == 0
    study = load(args)
    folder = study.study_dir / "linear/synthetic/seed=0"
    record = json.loads((folder / "result.json").read_text())
    assert record["config"]["study_job"]["study"] == study.study_id
    assert json.loads((folder / "job.json").read_text())["status"] == "finished"
    submitit_logs = list((study.study_dir / ".submitit").rglob("*_result.pkl"))
    assert len(submitit_logs) == 1, "the job ran in a submitit subprocess"


@pytest.mark.slow
def test_a_study_through_biqa_train_gives_one_wandb_run_per_job_and_a_summary_run(tiny_args, wandb_offline):
    """The done-when of issue 13: `biqa-train -m study=smoke debug=default logger=wandb` (offline)."""
    args = [*tiny_args, "logger=wandb", "debug=default"]
    assert run_train_multirun(args) == 0
    study = load(args)
    assert study.study_id == "smoke-" + study.study_id.split("-", 1)[1]  # logger=wandb is not part of the id
    run_ids = set()
    for job in study.jobs:
        folder = study.study_dir / job.name
        (run,) = offline_runs(folder / "wandb")
        run_ids.add(run.run_id)
        assert run.run_id == (folder / "wandb_run_id.txt").read_text() and run.finished
        assert (run.name, run.group, run.job_type) == (job.name, study.study_id, job.variant)
        assert {"model:pooled", "split:0", f"variant:{job.variant}"} <= set(run.tags)
        # The resolved config is the run's config.
        assert run.config["seed"] == 0 and run.config["study_job"]["variant"] == job.variant
        assert run.config["model"]["net"]["_target_"] == "biqa.models.baselines.PooledHead"
        assert run.config["trainer"]["limit_train_batches"] == 2  # debug=default
        assert {"test/srcc", "test/predictions/_type", "test/scatter/_type"} <= run.history_keys
    assert len(run_ids) == 2
    (summary,) = offline_runs(study.study_dir / "report")
    assert (summary.group, summary.job_type) == (study.study_id, "summary") and summary.finished
    assert {"summary/_type", "runs/_type", "srcc/_type"} <= summary.history_keys
    # The report's analyses (the synthetic data has distortion types): tables and the heatmap.
    assert {"analysis/per_distortion/_type", "analysis/per_distortion_heatmap/_type"} <= summary.history_keys
    assert os.environ["WANDB_MODE"] == "offline"


@pytest.mark.slow
def test_a_plain_multirun_gives_one_wandb_run_per_job_with_its_config(tmp_path, wandb_offline):
    """`biqa-train -m seed=0,1 logger=wandb debug=default` (offline)."""
    args = ["seed=0,1", "logger=wandb", "debug=default", f"paths.root_dir={tmp_path}",
            f"paths.cache_dir={tmp_path / 'cache'}", *STUDY_TINY]
    assert run_train_multirun(args) == 0
    runs = offline_runs(tmp_path / "logs" / "train" / "multirun")
    assert sorted(run.config["seed"] for run in runs) == [0, 1]
    assert len({run.run_id for run in runs}) == 2 and all(run.finished for run in runs)
    assert {run.group for run in runs} == {"train/multirun"} and {run.job_type for run in runs} == {"train"}
    assert all(f"seed={run.config['seed']}" in run.tags for run in runs)
    for seed in (0, 1):
        (folder,) = [p.parent for p in (tmp_path / "logs").rglob("job.json")
                     if f"seed={seed}" in json.loads(p.read_text())["overrides"]]
        assert json.loads((folder / "job.json").read_text())["status"] == "finished"
        assert (folder / "result.json").exists() and (folder / "test_scatter.png").exists()


@pytest.mark.slow
def test_a_resumed_run_continues_its_own_wandb_run(tmp_path, wandb_offline):
    import sys

    from biqa.cli.train import main as train_main

    args = ["logger=wandb", "debug=default", f"paths.root_dir={tmp_path}", f"paths.cache_dir={tmp_path / 'cache'}",
            *STUDY_TINY]
    for _ in range(2):  # the second run resumes from the first one's last.ckpt, in the same folder
        sys.argv, argv = [sys.argv[0], *args], sys.argv
        try:
            train_main()
        finally:
            sys.argv = argv
        GlobalHydra.instance().clear()
    (folder,) = {p.parent for p in (tmp_path / "logs").rglob("wandb_run_id.txt")}
    runs = offline_runs(folder / "wandb")
    assert len(runs) == 2 and runs[0].run_id == runs[1].run_id == (folder / "wandb_run_id.txt").read_text()


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
            load(args)
        return
    launcher = load(args).config.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert launcher.tasks_per_node == launcher.gpus_per_node
    assert {"partition", "timeout_min", "array_parallelism", "cpus_per_task", "setup"} <= set(launcher)



@pytest.mark.parametrize("override, flag", [("hydra.sweeper.action=dry_run", "--dry-run"),
                                            ("hydra.sweeper.wait=false", "--no-wait")])
def test_sweeper_settings_that_its_flags_own_are_refused_with_the_flag(override, flag, capsys):
    with pytest.raises(SystemExit) as stop:
        main(["study=smoke", override])
    assert stop.value.code == 2 and flag in capsys.readouterr().err
