"""A study as a Slurm job array through the launcher (`hydra/launcher=slurm_cpu`), on the real cluster: submit
and return (`--no-wait`), follow it (`--status`, from squeue and then sacct), never submit again a job that
Slurm holds or that finished, submit again one that was cancelled (`scancel`), wait, and write the report."""

from __future__ import annotations

import json
import re
import subprocess

import pytest
from tests.conftest import TINY
from tests.slurm.conftest import job_fields, squeue_ids, wait_for_accounting, wait_until

from biqa.cli.sweep import main
from biqa.study.launch import load
from biqa.study.records import Status

pytestmark = pytest.mark.slurm


def slurm_ids(args: list[str]) -> dict[str, str]:
    study = load(args)
    return {job.name: json.loads((study.study_dir / job.name / "job.json").read_text()).get("slurm_job_id")
            for job in study.jobs}


def test_a_study_array_submitted_followed_cancelled_resubmitted_and_reported(tmp_path, slurm_cache, slurm_env,
                                                                             capsys):
    args = ["study=smoke", "study.seeds=[0]", f"paths.root_dir={tmp_path}", f"paths.cache_dir={slurm_cache}",
            *TINY, "threads=1", "hydra/launcher=slurm_cpu"]
    linear, mlp = "linear/synthetic/seed=0", "mlp/synthetic/seed=0"

    assert main([*args, "--no-wait"]) == 0
    assert "launched 2" in capsys.readouterr().out
    ids = slurm_ids(args)
    array_id = ids[linear].split("_")[0]
    assert ids == {linear: f"{array_id}_0", mlp: f"{array_id}_1"}, "one array, its tasks' ids recorded"
    assert set(ids.values()) <= squeue_ids()

    # Slurm holds both (they start in seconds, and run longer): the status view says so, a re-run submits none.
    assert main([*args, "--status"]) == 0
    out = capsys.readouterr().out
    for name, job_id in ids.items():
        assert re.search(rf"(queued|running) +{job_id} {re.escape(name)}\n", out), out
    assert main([*args, "--no-wait"]) == 0
    assert "launched 0" in capsys.readouterr().out
    assert {i.split("_")[0] for i in squeue_ids()} == {array_id}, "nothing was submitted again"

    # Cancelled while it runs, it leaves squeue; sacct says how it ended, and the study counts it as interrupted.
    # (A task cancelled before it starts never reaches sacct: the node may still be busy with an earlier
    # test's jobs, so the test waits for it to run.)
    wait_until(lambda: job_fields(ids[linear]).get("JobState") == "RUNNING", 120, f"job {ids[linear]} to start",
               state=lambda: job_fields(ids[linear]).get("JobState"))
    subprocess.run(["scancel", ids[linear]], check=True)
    wait_until(lambda: ids[linear] not in squeue_ids(), 60, "the cancelled job to leave squeue", state=squeue_ids)
    wait_for_accounting(ids[linear], "CANCELLED")
    statuses = {job.name: status for job, status in load(args).status().items()}
    assert statuses[linear] is Status.INTERRUPTED and statuses[mlp] in (Status.RUNNING, Status.FINISHED)

    # Waiting: the cancelled job alone is submitted again (a new job id), the other one is left to Slurm.
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "launched 1" in out, out
    resubmitted = slurm_ids(args)
    assert resubmitted[mlp] == ids[mlp] and resubmitted[linear] != ids[linear]
    assert (load(args).study_dir / linear / "result.json").exists()
    wait_until(lambda: not set(resubmitted.values()) & squeue_ids(), 300, "both jobs to leave squeue",
               state=squeue_ids)
    wait_for_accounting(resubmitted[linear], "COMPLETED")
    wait_for_accounting(resubmitted[mlp], "COMPLETED")

    assert main([*args, "--status"]) == 0
    out = capsys.readouterr().out
    for name, job_id in resubmitted.items():
        assert re.search(rf"finished +{job_id} {re.escape(name)}\n", out), out
    assert main(args) == 0, "a re-run submits nothing for finished jobs, and writes the report"
    out = capsys.readouterr().out
    assert "launched 0" in out
    summary = (load(args).study_dir / "report" / "summary.md").read_text()
    assert "linear" in summary and "mlp" in summary
