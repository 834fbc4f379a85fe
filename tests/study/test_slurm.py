"""What a study on Slurm does without a cluster: the Slurm job id a job records, and the refusal of
`--no-wait` by a launcher that cannot submit. Submission, states, cancellation and resubmission are tested on
a real cluster (tests/slurm/test_study_array.py)."""

import os

import pytest


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


# What a one-node CPU cluster cannot show: a GPU partition with a time limit, and accounting that is down.
# Fake Slurm commands on PATH stand in for them.
GPU_CLUSTER = {
    "scontrol": """case "$2" in
partition) echo "PartitionName=gpu Default=YES MaxTime=1-00:00:00 State=UP TotalNodes=2";;
node) echo "NodeName=g1 CPUTot=32 RealMemory=256000 Gres=gpu:a100:4(S:0-1) Partitions=gpu"
      echo "NodeName=g2 CPUTot=32 RealMemory=256000 Gres=gpu:a100:4(S:0-1) Partitions=gpu";;
esac""",
    "squeue": "true",
    "sacct": 'echo "sacct: error: Problem talking to the database: Connection refused" >&2; exit 1',
}


def fake_commands(folder, commands: dict[str, str], monkeypatch) -> None:
    """Each of `commands` (name: bash body) as an executable in `folder`, found first on PATH."""
    folder.mkdir(exist_ok=True)
    for name, body in commands.items():
        path = folder / name
        path.write_text(f"#!/bin/bash\n{body}\n")
        path.chmod(0o755)
    monkeypatch.setenv("PATH", f"{folder}:{os.environ['PATH']}")


@pytest.fixture
def fake_cluster(tmp_path, monkeypatch):
    fake_commands(tmp_path, GPU_CLUSTER, monkeypatch)


def test_a_gpu_partition_refuses_more_gpus_nodes_or_time_than_it_has(fake_cluster):
    from biqa.study.slurm import SlurmConfigError, check_cluster_fits

    check_cluster_fits({"gpus_per_node": 4, "tasks_per_node": 4, "cpus_per_task": 8, "mem_gb": 200,
                        "nodes": 2, "timeout_min": 1440})
    with pytest.raises(SlurmConfigError) as refused:
        check_cluster_fits({"gpus_per_node": 8, "nodes": 3, "timeout_min": 1441})
    message = str(refused.value)
    assert "hydra.launcher.gpus_per_node=8: its nodes have 4 GPUs" in message
    assert "hydra.launcher.nodes=3: it has 2 node(s)" in message
    assert "hydra.launcher.timeout_min=1441: its time limit is 1440 minutes" in message


def test_with_accounting_down_a_job_that_left_squeue_is_judged_by_its_files(fake_cluster, caplog):
    from biqa.study.slurm import slurm_states

    assert slurm_states(["4001_0"]) == {}
    assert "sacct failed" in caplog.text


def test_an_array_task_cancelled_before_it_started_counts_as_interrupted(tmp_path, monkeypatch):
    """Such a task leaves squeue and never reaches sacct, which lists only its pending siblings."""
    from biqa.run_folder import write_state
    from biqa.study.records import Status
    from biqa.study.slurm import with_slurm_states
    from biqa.study.spec import Job

    fake_commands(tmp_path / "bin", {"squeue": 'echo "4001_1 PENDING"', "sacct": 'echo "4001_[1]|PENDING"'},
                  monkeypatch)
    cancelled, pending = (Job(f"linear/synthetic/seed={seed}", "linear", "synthetic", seed, (), ()) for seed in (0, 1))
    for job, task in ((cancelled, "4001_0"), (pending, "4001_1")):
        write_state(tmp_path / job.name, "submitted", slurm_job_id=task)

    statuses = with_slurm_states({cancelled: Status.INTERRUPTED, pending: Status.INTERRUPTED}, tmp_path)
    assert statuses == {cancelled: Status.INTERRUPTED, pending: Status.QUEUED}
