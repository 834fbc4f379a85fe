"""A re-run of a study skips what finished and runs again exactly what is missing."""

import json
from pathlib import Path

import pytest
from hydra.core.global_hydra import GlobalHydra

from biqa.cli.sweep import main
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
