"""The report's analyses from synthetic run folders: significance marks, per-distortion tables, routing."""

import json

import numpy as np
import pandas as pd
import pytest

from biqa.run_folder import PREDICTIONS_FILE, ROUTING_FILE
from biqa.study.report import write_report
from biqa.study.spec import StudySpec, expand

# Nine run folders, a bootstrap per variant and four figures: seconds.
pytestmark = pytest.mark.slow

TYPES = ["blur", "noise", "jpeg", "contrast"]
NOISE = {"ref": 0.30, "better": 0.05, "same": 0.30}


def write_run(folder, job, seed_offset: int, images: int = 120) -> None:
    generator = np.random.default_rng(1000 * job.seed + seed_offset)
    score = np.random.default_rng(job.seed).uniform(size=images)  # one split, the same images for every variant
    prediction = score + generator.normal(scale=NOISE[job.variant], size=images)
    names = [f"s{job.seed}/img{i}.png" for i in range(images)]
    table = pd.DataFrame({"image": names, "score": score, "prediction": prediction,
                          "distortion_type": [TYPES[i % 4] for i in range(images)],
                          "distortion_level": [1 + i % 3 for i in range(images)]})
    folder.mkdir(parents=True, exist_ok=True)
    table.to_csv(folder / PREDICTIONS_FILE, index=False)
    srcc = table[["prediction", "score"]].corr("spearman").iloc[0, 1]
    record = {"metrics": {"test/srcc": srcc, "test/plcc": srcc}, "parameters": {"total": 10, "decoder": 1},
              "config": {"study_job": {"fingerprint": job.fingerprint}}}
    (folder / "result.json").write_text(json.dumps(record))
    if job.variant == "better":  # a MoE whose experts follow the distortion type
        rows = [{"image": name, "router": "net.moe.moe.router", "crop": 0, "token": token,
                 "expert": TYPES.index(table.distortion_type[i]), "weight": 1.0}
                for i, name in enumerate(names) for token in range(2)]
        pd.DataFrame(rows).to_csv(folder / ROUTING_FILE, index=False)


@pytest.fixture
def report(tmp_path):
    spec = StudySpec(name="t", variants={"ref": [], "better": ["a=1"], "same": ["a=2"]}, reference="ref",
                     seeds=[0, 1, 2])
    jobs = expand(spec)
    for offset, job in enumerate(jobs):
        write_run(tmp_path / job.name, job, offset)
    return write_report(tmp_path, spec, "t", jobs)


def test_significance_columns_and_marks(report):
    summary = pd.read_csv(report.summary_csv).set_index("variant")
    assert summary.loc["better", "ci_excludes_zero"] and summary.loc["better", "ci_low"] > 0
    assert not summary.loc["same", "ci_excludes_zero"]
    assert summary.loc["same", "ci_low"] < 0 < summary.loc["same", "ci_high"]
    assert summary.loc["better", "paired_splits"] == 3 and np.isnan(summary.loc["ref", "paired_splits"])
    assert summary.loc["better", "splits_needed"] >= 2
    markdown = report.markdown.read_text()
    better_row = next(line for line in markdown.splitlines() if line.startswith("| synthetic | better | 0."))
    same_row = next(line for line in markdown.splitlines() if line.startswith("| synthetic | same | 0."))
    assert " *" in better_row and " *" not in same_row
    assert "## Is the delta real?" in markdown and "paired bootstrap" in markdown


def test_per_distortion_and_routing_files(report):
    folder = report.markdown.parent
    names = {path.name for path in folder.iterdir()}
    assert {"per_distortion.csv", "per_distortion_type_srcc.csv", "per_distortion_level_srcc.csv",
            "per_distortion.png", "routing_share.csv", "routing_specialisation.csv", "routing_better.png"} <= names
    by_type = pd.read_csv(folder / "per_distortion_type_srcc.csv").set_index("variant")
    assert list(by_type.index) == ["ref", "better", "same"] and set(TYPES) <= set(by_type.columns)
    assert (by_type.loc["better", TYPES] > by_type.loc["ref", TYPES]).all()
    figures = pd.read_csv(folder / "routing_specialisation.csv")
    assert set(figures["variant"]) == {"better"} and len(figures) == 3
    assert figures["mi_bits"].to_numpy() == pytest.approx(2.0) and (figures["p_value"] < 0.01).all()
    markdown = report.markdown.read_text()
    assert "## Per distortion type and level" in markdown and "| better | " in markdown
    assert "## Expert routing" in markdown and "3/3" in markdown and "routing_better.png" in markdown
    images = {name for analysis in report.analyses for name in analysis.images}
    assert images == {"per_distortion_heatmap", "routing_map/better"}


def test_analyses_go_to_a_wandb_run_as_tables_and_images(report, tmp_path, monkeypatch):
    import wandb

    from biqa.study.analysis import log_to_wandb

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    run = wandb.init(project="biqa-test", dir=str(tmp_path))
    log_to_wandb(run, report.analyses)
    run.finish()
    tables = {path.name.rsplit("_", 2)[0] for path in tmp_path.rglob("files/media/table/analysis/*.table.json")}
    images = {str(path.relative_to(path.parents[1] if path.parent.name == "routing_map" else path.parent)).rsplit("_", 2)[0]
              for path in tmp_path.rglob("files/media/images/analysis/**/*.png")}
    assert {"per_distortion", "per_distortion_type_srcc", "routing_share", "routing_specialisation"} <= tables
    assert images == {"per_distortion_heatmap", "routing_map/better"}
