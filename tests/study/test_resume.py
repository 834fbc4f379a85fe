"""A re-run of a study skips what finished and runs again exactly what is missing."""

import json
import os
import signal
from pathlib import Path

import pytest
from hydra.core.global_hydra import GlobalHydra

from biqa.cli.sweep import main
from biqa.study.job import STOP_REQUESTED
from biqa.study.launch import prepare, run

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def clear_hydra():
    yield
    GlobalHydra.instance().clear()


def test_rerun_executes_nothing_then_only_the_deleted_job(tiny_study_args, capsys):
    assert main(tiny_study_args) == 0
    study = prepare(tiny_study_args)
    records = {job.name: study.study_dir / job.name / "result.json" for job in study.jobs}
    assert set(records) == {"linear/synthetic/seed=0", "mlp/synthetic/seed=0"}
    assert all(path.exists() for path in records.values())
    report = study.study_dir / "report" / "summary.md"
    assert "| synthetic | mlp |" in report.read_text() and "1/1" in report.read_text()
    assert (study.study_dir / "linear/synthetic/seed=0" / "test_scatter.png").exists()
    record = json.loads(records["mlp/synthetic/seed=0"].read_text())
    assert record["parameters"]["decoder"] > 0 and record["provenance"]["git_commit"]
    assert record["config"]["study_job"]["variant"] == "mlp"

    mtimes = {name: path.stat().st_mtime_ns for name, path in records.items()}
    assert run(prepare(tiny_study_args))["launched"] == 0
    assert {name: path.stat().st_mtime_ns for name, path in records.items()} == mtimes

    records["mlp/synthetic/seed=0"].unlink()
    counts = run(prepare(tiny_study_args))
    assert counts["launched"] == 1 and counts["finished"] == 2
    assert records["linear/synthetic/seed=0"].stat().st_mtime_ns == mtimes["linear/synthetic/seed=0"]
    assert records["mlp/synthetic/seed=0"].exists()


def test_a_failing_job_is_recorded_and_does_not_stop_the_others(tiny_study_args):
    args = [*tiny_study_args, "study.variants.mlp=['model=pooled','model.net.dropout=2.0']"]
    study = prepare(args)
    counts = run(study)
    assert counts == {"launched": 2, "finished": 1, "failed": 1}
    state = json.loads(Path(study.study_dir / "mlp/synthetic/seed=0" / "job.json").read_text())
    assert state["status"] == "failed" and "Error" in state["error"]


@pytest.fixture
def stop_flag():
    yield STOP_REQUESTED
    STOP_REQUESTED.clear()


def test_sigterm_stops_a_local_study_and_the_crashed_job_counts_as_interrupted(tiny_study_args, monkeypatch,
                                                                              stop_flag):
    def train_killed_with_its_workers(cfg):
        os.kill(os.getpid(), signal.SIGTERM)  # handled by the study, or this test process would die here
        raise RuntimeError("DataLoader worker (pid 1) is killed by signal: Terminated.")

    monkeypatch.setattr("biqa.engine.train", train_killed_with_its_workers)
    original = signal.getsignal(signal.SIGTERM)
    study = prepare(tiny_study_args)
    with pytest.raises(SystemExit, match="interrupted"):
        run(study)
    assert stop_flag.is_set()
    assert [status.value for status in study.status().values()] == ["interrupted", "missing"]
    assert signal.getsignal(signal.SIGTERM) is original


def test_no_job_starts_once_a_stop_was_requested(tiny_study_args, stop_flag):
    stop_flag.set()
    study = prepare(tiny_study_args)
    with pytest.raises(SystemExit, match="not started"):
        run(study)
    assert [status.value for status in study.status().values()] == ["missing", "missing"]
