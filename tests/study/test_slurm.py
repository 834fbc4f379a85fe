"""A study on Slurm without a waiting sweeper, against fake `sbatch`, `squeue`, `sacct`, `scontrol` and `srun` on PATH:
submit and return, a status view of queued and running jobs, and no second submission of a job Slurm holds."""

import json
import os
import re
import stat
from pathlib import Path

import pytest
from hydra.core.global_hydra import GlobalHydra

from biqa.cli.sweep import main
from biqa.study.launch import load
from biqa.study.records import Status

FAKES = {
    # sbatch answers as Slurm does; each call is one line of sbatch_calls (its submission file's path).
    "sbatch": 'echo "$@" >> "$FAKE_SLURM/sbatch_calls"\n'
              'echo "Submitted batch job $((4000 + $(wc -l < "$FAKE_SLURM/sbatch_calls")))"\n',
    "squeue": 'echo "$@" >> "$FAKE_SLURM/squeue_calls"\ncat "$FAKE_SLURM/squeue.txt" 2>/dev/null; true\n',
    "sacct": 'echo "$@" >> "$FAKE_SLURM/sacct_calls"\ncat "$FAKE_SLURM/sacct.txt" 2>/dev/null; true\n',
    "scontrol": 'echo "$@" >> "$FAKE_SLURM/scontrol_calls"\n',
    "srun": 'exit 1\n',  # submitit looks for it before it submits; nothing here runs a job
}


@pytest.fixture
def fake_slurm(tmp_path, monkeypatch) -> Path:
    bin_dir, state = tmp_path / "bin", tmp_path / "slurm"
    bin_dir.mkdir()
    state.mkdir()
    for name, body in FAKES.items():
        path = bin_dir / name
        path.write_text("#!/bin/bash\n" + body)
        path.chmod(path.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_SLURM", str(state))
    yield state
    GlobalHydra.instance().clear()


def sbatch_calls(state: Path) -> list[str]:
    calls = state / "sbatch_calls"
    return calls.read_text().splitlines() if calls.exists() else []


def slurm_ids(study) -> dict[str, str]:
    return {job.name: json.loads((study.study_dir / job.name / "job.json").read_text()).get("slurm_job_id")
            for job in study.jobs}


@pytest.mark.slow
def test_submit_return_follow_and_never_resubmit_a_job_slurm_holds(tmp_path, fake_slurm, capsys):
    args = ["study=smoke", "study.seeds=[0]", f"paths.root_dir={tmp_path}", "hydra/launcher=slurm",
            "hydra.launcher.partition=debug"]

    assert main([*args, "--no-wait"]) == 0, "submitting returns at once, nothing ran here"
    (submission,) = sbatch_calls(fake_slurm)
    script = Path(submission).read_text()
    assert "#SBATCH --array=0-1%" in script and "#SBATCH --partition=debug" in script
    study = load(args)
    assert slurm_ids(study) == {"linear/synthetic/seed=0": "4001_0", "mlp/synthetic/seed=0": "4001_1"}
    assert not any((study.study_dir / job.name / "result.json").exists() for job in study.jobs)
    assert "launched 2" in capsys.readouterr().out

    # Slurm holds both: the status view says where each one is, and a re-run submits nothing.
    (fake_slurm / "squeue.txt").write_text("4001_0 PENDING\n4001_1 RUNNING\n")
    assert main([*args, "--status"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"queued +4001_0 linear/synthetic/seed=0", out)
    assert re.search(r"running +4001_1 mlp/synthetic/seed=0", out)
    assert "--jobs=4001_0,4001_1" in (fake_slurm / "squeue_calls").read_text()
    assert main([*args, "--no-wait"]) == 0
    assert len(sbatch_calls(fake_slurm)) == 1 and "launched 0" in capsys.readouterr().out

    # squeue no longer lists them: sacct says one was cancelled (submitted again), one still runs.
    (fake_slurm / "squeue.txt").write_text("")
    (fake_slurm / "sacct.txt").write_text("4001_0|CANCELLED by 0\n4001_1|RUNNING\n")
    assert [s for s in load(args).status().values()] == [Status.INTERRUPTED, Status.RUNNING]
    assert main([*args, "--no-wait"]) == 0
    assert len(sbatch_calls(fake_slurm)) == 2, "the cancelled job alone was submitted again (one job, no array)"
    assert slurm_ids(load(args)) == {"linear/synthetic/seed=0": "4002", "mlp/synthetic/seed=0": "4001_1"}


def test_a_job_records_its_own_slurm_id_when_it_starts(monkeypatch):
    from biqa.study.job import slurm_job_id

    monkeypatch.setenv("SLURM_JOB_ID", "77")
    monkeypatch.delenv("SLURM_ARRAY_JOB_ID", raising=False)
    assert slurm_job_id() == "77"
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "70")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "3")
    assert slurm_job_id() == "70_3"


def test_waiting_is_refused_by_a_launcher_that_cannot_submit(tmp_path):
    from biqa.study.slurm import submit

    with pytest.raises(ValueError, match="hydra/launcher=slurm"):
        submit(object(), [], [], tmp_path)
