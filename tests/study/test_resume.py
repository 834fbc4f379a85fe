"""A re-run of a study skips what finished and runs again exactly what is missing."""

import json
import os
import re
import signal
from pathlib import Path

import pytest
from hydra.core.global_hydra import GlobalHydra

from biqa.cli.sweep import main
from biqa.study.job import STOP_REQUESTED
from biqa.study.launch import load

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def clear_hydra():
    yield
    GlobalHydra.instance().clear()


def launched(capsys) -> tuple[int, str]:
    """(jobs launched, the final status counts) from the sweep's summary line."""
    match = re.search(r"^launched (\d+); now (.*)$", capsys.readouterr().out, re.MULTILINE)
    assert match, "the sweep printed no summary line"
    return int(match.group(1)), match.group(2)


def test_rerun_executes_nothing_then_only_the_deleted_job(tiny_study_args, capsys):
    assert main(tiny_study_args) == 0
    assert launched(capsys) == (2, "2 finished")
    study = load(tiny_study_args)
    records = {job.name: study.study_dir / job.name / "result.json" for job in study.jobs}
    assert set(records) == {"linear/synthetic/seed=0", "mlp/synthetic/seed=0"}
    assert all(path.exists() for path in records.values())
    report = study.study_dir / "report" / "summary.md"
    assert "| synthetic | mlp |" in report.read_text() and "1/1" in report.read_text()
    assert (study.study_dir / "linear/synthetic/seed=0" / "test_scatter.png").exists()
    record = json.loads(records["mlp/synthetic/seed=0"].read_text())
    assert record["parameters"]["decoder"] > 0 and record["provenance"]["git_commit"]
    assert record["config"]["study_job"]["variant"] == "mlp"
    state = json.loads((study.study_dir / "mlp/synthetic/seed=0" / "job.json").read_text())
    assert state["status"] == "finished" and state["fingerprint"] == study.jobs[1].fingerprint

    mtimes = {name: path.stat().st_mtime_ns for name, path in records.items()}
    assert main(tiny_study_args) == 0
    assert launched(capsys) == (0, "2 finished")
    assert {name: path.stat().st_mtime_ns for name, path in records.items()} == mtimes

    records["mlp/synthetic/seed=0"].unlink()
    assert main(tiny_study_args) == 0
    assert launched(capsys) == (1, "2 finished")
    assert records["linear/synthetic/seed=0"].stat().st_mtime_ns == mtimes["linear/synthetic/seed=0"]
    assert records["mlp/synthetic/seed=0"].exists()


def test_a_failing_job_is_recorded_and_does_not_stop_the_others(tiny_study_args, capsys):
    args = [*tiny_study_args, "study.variants.mlp=['model=pooled','model.net.dropout=2.0']"]
    assert main(args) == 1, "a study with a failed job exits with an error"
    assert launched(capsys) == (2, "1 failed, 1 finished")
    study = load(args)
    state = json.loads(Path(study.study_dir / "mlp/synthetic/seed=0" / "job.json").read_text())
    assert state["status"] == "failed" and "Error" in state["error"] and "Traceback" in state["traceback"]


def test_the_cross_dataset_wave_tests_each_finished_checkpoint_on_the_other_datasets(tiny_study_args, capsys,
                                                                                   tmp_path):
    # `other`: the same embedded dataset under a second name, so the test needs no dataset on disk.
    (tmp_path / "extra" / "data").mkdir(parents=True)
    (tmp_path / "extra" / "data" / "other.yaml").write_text("defaults:\n  - synthetic\n  - _self_\n")
    args = [*tiny_study_args, "~study.variants.mlp", "++study.test_datasets=[synthetic,other]",
            f"hydra.searchpath=[file://{tmp_path / 'extra'}]"]
    assert main(args) == 0
    assert launched(capsys) == (2, "2 finished")
    folder = load(args).study_dir / "linear/synthetic/seed=0"
    record = json.loads((folder / "cross/other" / "result.json").read_text())
    trained = json.loads((folder / "result.json").read_text())
    assert record["checkpoint"] == trained["checkpoint"] and record["provenance"]["tested_on"] == "other"
    assert record["parameters"] == trained["parameters"] and 0 <= abs(record["metrics"]["test/srcc"]) <= 1
    assert (folder / "cross/other" / "test_scatter.png").exists()


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
    assert main(tiny_study_args) == 1
    assert stop_flag.is_set()
    assert [status.value for status in load(tiny_study_args).status().values()] == ["interrupted", "missing"]
    assert signal.getsignal(signal.SIGTERM) is original


def test_no_job_starts_once_a_stop_was_requested(tiny_study_args, stop_flag):
    stop_flag.set()
    assert main(tiny_study_args) == 1
    assert [status.value for status in load(tiny_study_args).status().values()] == ["missing", "missing"]
