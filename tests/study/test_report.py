"""The study table from synthetic records: medians, means, stds, deltas, split counts, parameters, matrix."""

import json
import math
from pathlib import Path

import pandas as pd
import pytest

from biqa.study.report import write_report
from biqa.study.spec import StudySpec, cross_dataset_jobs, expand

SRCC = {"ref": [0.80, 0.90, 0.70], "better": [0.85, 0.95, 0.91], "half": [0.50, None, None]}


def write_record(folder: Path, job, srcc: float, parameters: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    record = {"metrics": {"test/srcc": srcc, "test/plcc": srcc + 0.01, "val/srcc_best": srcc - 0.02},
              "parameters": {"total": parameters, "decoder": parameters // 10},
              "config": {"study_job": {"fingerprint": job.fingerprint}}}
    (folder / "result.json").write_text(json.dumps(record))


@pytest.fixture
def study(tmp_path):
    spec = StudySpec(name="t", variants={"ref": [], "better": ["model.net.hidden_dim=8"], "half": ["x=1"]},
                     reference="ref", seeds=[0, 1, 2])
    jobs = expand(spec)
    for job in jobs:
        value = SRCC[job.variant][job.seed]
        if value is not None:
            write_record(tmp_path / job.name, job, value, 2_000_000 + 1000 * len(job.variant))
    return spec, jobs, tmp_path


def test_summary_has_medians_means_stds_deltas_and_split_counts(study):
    spec, jobs, folder = study
    files = write_report(folder, spec, "t", jobs)
    summary = pd.read_csv(files.summary_csv).set_index("variant")
    assert summary.loc["ref", "srcc_median"] == pytest.approx(0.80)
    assert summary.loc["ref", "srcc_mean"] == pytest.approx(0.80)
    assert summary.loc["ref", "srcc_std"] == pytest.approx(0.10)
    assert summary.loc["better", "srcc_median"] == pytest.approx(0.91)
    assert summary.loc["better", "srcc_mean"] == pytest.approx((0.85 + 0.95 + 0.91) / 3)
    assert summary.loc["better", "delta_srcc"] == pytest.approx(0.11)
    assert summary.loc["better", "delta_plcc"] == pytest.approx(0.11)
    assert summary.loc["ref", "delta_srcc"] == pytest.approx(0.0)
    assert summary.loc["half", "finished_splits"] == 1 and summary.loc["half", "splits"] == "1/3"
    assert math.isnan(summary.loc["half", "srcc_std"])
    assert summary.loc["better", "val_srcc_median"] == pytest.approx(0.89)  # picked on, shown beside the test
    assert summary.loc["better", "parameters"] == 2_006_000 and summary.loc["better", "decoder_parameters"] == 200_600
    markdown = files.markdown.read_text()
    assert "| synthetic | **ref** (ref) | 0.8000 |" in markdown
    assert "| +0.1100 | 0.8900 | 3/3 |" in markdown and "0.8000 +/- 0.1000" in markdown and "2.01M" in markdown
    assert files.plot.exists() and files.plot.stat().st_size > 1000
    runs = pd.read_csv(files.runs_csv)
    assert len(runs) == 9 and (runs["status"] == "missing").sum() == 2


def test_a_record_of_other_overrides_is_not_counted(study):
    spec, jobs, folder = study
    stale = next(j for j in jobs if j.name == "better/synthetic/seed=1")
    record = json.loads((folder / stale.name / "result.json").read_text())
    record["config"]["study_job"]["fingerprint"] = "edited-since"
    (folder / stale.name / "result.json").write_text(json.dumps(record))
    summary = pd.read_csv(write_report(folder, spec, "t", jobs).summary_csv).set_index("variant")
    assert summary.loc["better", "splits"] == "2/3"
    assert summary.loc["better", "srcc_median"] == pytest.approx((0.85 + 0.91) / 2)


def test_cross_dataset_study_gives_the_train_by_test_matrix(tmp_path):
    spec = StudySpec(name="x", variants={"a": []}, datasets=["d1", "d2"], test_datasets=["d1", "d2"], seeds=[0, 1])
    jobs = expand(spec)
    in_domain = {"d1": [0.9, 0.8], "d2": [0.7, 0.6]}
    for job in jobs:
        write_record(tmp_path / job.name, job, in_domain[job.dataset][job.seed], 10)
    cross = cross_dataset_jobs(spec, {job: "ckpt" for job in jobs})
    for job in cross:
        write_record(tmp_path / job.name, job, 0.5 if job.dataset == "d1" else 0.3 + 0.1 * job.seed, 10)
    files = write_report(tmp_path, spec, "x", jobs + cross)
    matrix = pd.read_csv(files.cross_csv).set_index(["variant", "train"])
    assert matrix.loc[("a", "d1"), "d1"] == pytest.approx(0.85)
    assert matrix.loc[("a", "d1"), "d2"] == pytest.approx(0.5)
    assert matrix.loc[("a", "d2"), "d1"] == pytest.approx(0.35)
    assert matrix.loc[("a", "d2"), "d2"] == pytest.approx(0.65)
    assert "train \\ test" in files.markdown.read_text()


def test_published_figures_stand_beside_the_rows_of_the_same_model_and_dataset(tmp_path):
    spec = StudySpec(name="p", variants={"lifeiqa": [], "pooled": ["model=pooled"]}, reference="lifeiqa",
                     datasets=["koniq10k"], seeds=[0])
    jobs = expand(spec)
    for job in jobs:
        model = {"lifeiqa": "biqa.models.lifeiqa.LifeIQA", "pooled": "biqa.models.baselines.PooledHead"}[job.variant]
        (tmp_path / job.name).mkdir(parents=True)
        record = {"metrics": {"test/srcc": 0.9, "test/plcc": 0.91}, "parameters": {},
                  "config": {"study_job": {"fingerprint": job.fingerprint}, "model": {"net": {"_target_": model}}}}
        (tmp_path / job.name / "result.json").write_text(json.dumps(record))
    files = write_report(tmp_path, spec, "p", jobs)
    summary = pd.read_csv(files.summary_csv).set_index("variant")
    # Life-IQA's paper: KonIQ-10k SRCC 0.943, PLCC 0.946 (conf/published.yaml); the pooled floor has none.
    assert summary.loc["lifeiqa", ["published_srcc", "published_plcc"]].tolist() == [0.943, 0.946]
    assert math.isnan(summary.loc["pooled", "published_srcc"])
    lines = files.markdown.read_text().splitlines()
    assert any(line.endswith("| published SRCC / PLCC |") for line in lines)
    assert next(line for line in lines if "**lifeiqa**" in line).endswith("| 0.9430 / 0.9460 |")
    assert next(line for line in lines if "| pooled |" in line).endswith("| - |")
