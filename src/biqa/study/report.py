"""A study's records -> the table papers print: one row per variant, median SRCC/PLCC over the splits,
mean +/- std, the number of finished splits, the delta against the reference variant, parameter counts.
Written as Markdown and CSV with a per-variant plot; cross-dataset studies add the train x test matrix.
`biqa.study.analysis` adds whether each delta is real, per-distortion results and expert routing."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import OmegaConf

from biqa.config import CONFIG_DIR
from biqa.plots import variant_plot
from biqa.run_folder import RESULT_FILE, read_json
from biqa.study.analysis import (
    Analysis,
    add_significance,
    per_distortion_section,
    routing_section,
    significance_markdown,
)
from biqa.study.records import Status, job_status
from biqa.study.spec import Job, StudySpec

METRICS = ("srcc", "plcc", "krcc", "rmse")
# The papers' own figures, kept beside the run configs.
PUBLISHED_FILE = Path(CONFIG_DIR) / "published.yaml"


@dataclass(frozen=True)
class ReportFiles:
    markdown: Path
    summary_csv: Path
    runs_csv: Path
    plot: Path | None
    cross_csv: Path | None
    analyses: list[Analysis] = field(default_factory=list)
    """Significance, per-distortion and routing: their files, and their tables and images for W&B."""


def row_label(job: Job) -> str:
    return f"{job.variant}[{job.grid_label}]" if job.grid else job.variant


def collect_runs(study_dir: Path, jobs: Sequence[Job]) -> pd.DataFrame:
    """One row per job, finished or not, with its test metrics and parameter counts."""
    rows = []
    for job in jobs:
        folder = study_dir / job.name
        status = job_status(folder, job)
        record = read_json(folder / RESULT_FILE) if status is Status.FINISHED else None
        metrics = (record or {}).get("metrics") or {}
        parameters = (record or {}).get("parameters") or {}
        rows.append({
            "row": row_label(job), "variant": job.variant, "grid": job.grid_label, "kind": job.kind,
            "model": model_of(record), "dataset": job.dataset, "test_dataset": job.test_dataset or job.dataset,
            "seed": job.seed,
            "status": status.value,
            **{name: metrics.get(f"test/{name}", np.nan) for name in METRICS},
            # What the checkpoint (or a probe's penalty) was picked on: a recipe is chosen on this, never on test.
            "val_srcc": metrics.get("val/srcc_best", metrics.get("val/srcc", np.nan)),
            "parameters": parameters.get("total", np.nan), "decoder_parameters": parameters.get("decoder", np.nan),
            "folder": str(folder),
        })
    return pd.DataFrame(rows)


def summarise(runs: pd.DataFrame, order: Sequence[str], reference: str | None, seeds: int) -> pd.DataFrame:
    """One row per (dataset, variant) over the in-domain test results of its finished splits."""
    in_domain = runs[runs["kind"] == "train"]
    table = []
    for dataset in dict.fromkeys(in_domain["dataset"]):
        for row in order:
            subset = in_domain[(in_domain["dataset"] == dataset) & (in_domain["row"] == row)]
            if subset.empty:
                continue
            done = subset[subset["status"] == Status.FINISHED.value]
            models = done["model"].dropna()
            entry = {"dataset": dataset, "variant": row, "splits": f"{len(done)}/{seeds}",
                     "finished_splits": len(done), "model": models.iloc[0] if len(models) else None}
            entry.update(published(entry["model"], dataset))
            for metric in ("srcc", "plcc"):
                values = done[metric].dropna().to_numpy(dtype=float)
                entry[f"{metric}_median"] = float(np.median(values)) if values.size else math.nan
                entry[f"{metric}_mean"] = float(values.mean()) if values.size else math.nan
                entry[f"{metric}_std"] = float(values.std(ddof=1)) if values.size > 1 else math.nan
            entry["val_srcc_median"] = _count(done["val_srcc"])
            entry["parameters"] = _count(done["parameters"])
            entry["decoder_parameters"] = _count(done["decoder_parameters"])
            table.append(entry)
    summary = pd.DataFrame(table)
    if summary.empty:
        return summary
    for metric in ("srcc", "plcc"):
        summary[f"delta_{metric}"] = math.nan
    if reference is not None:
        for index, entry in summary.iterrows():
            ref_row = _reference_row(entry["variant"], reference)
            ref = summary[(summary["dataset"] == entry["dataset"]) & (summary["variant"] == ref_row)]
            if ref.empty:
                continue
            for metric in ("srcc", "plcc"):
                summary.loc[index, f"delta_{metric}"] = entry[f"{metric}_median"] - ref.iloc[0][f"{metric}_median"]
    return summary


def cross_dataset_matrix(runs: pd.DataFrame, metric: str = "srcc") -> pd.DataFrame:
    """Median `metric` over splits for every (variant, train dataset) x test dataset; the diagonal is the
    in-domain test part, the rest tests the whole of another dataset."""
    done = runs[runs["status"] == Status.FINISHED.value]
    if done.empty or (done["kind"] != "cross_eval").all():
        return pd.DataFrame()
    matrix = done.pivot_table(index=["variant", "dataset"], columns="test_dataset", values=metric, aggfunc="median")
    matrix.index = matrix.index.set_names(["variant", "train"])
    return matrix


def to_markdown(summary: pd.DataFrame, reference: str | None) -> str:
    header = ("| dataset | variant | SRCC (median) | PLCC (median) | SRCC mean +/- std | PLCC mean +/- std | "
              "dSRCC | dPLCC | val SRCC (median) | splits | params | decoder params | published SRCC / PLCC |")
    lines = [header, "|" + "---|" * 13]
    for _, entry in summary.iterrows():
        name = f"**{entry['variant']}** (ref)" if entry["variant"] == reference else entry["variant"]
        lines.append("| " + " | ".join([
            entry["dataset"], name, _num(entry["srcc_median"]), _num(entry["plcc_median"]),
            _mean_std(entry["srcc_mean"], entry["srcc_std"]), _mean_std(entry["plcc_mean"], entry["plcc_std"]),
            _num(entry["delta_srcc"], signed=True) + (" *" if bool(entry.get("ci_excludes_zero", False)) else ""),
            _num(entry["delta_plcc"], signed=True), _num(entry["val_srcc_median"]), entry["splits"],
            _millions(entry["parameters"]), _millions(entry["decoder_parameters"]),
            f"{_num(entry['published_srcc'])} / {_num(entry['published_plcc'])}"
            if not math.isnan(entry["published_srcc"]) else "-",
        ]) + " |")
    return "\n".join(lines) + "\n"


def matrix_markdown(matrix: pd.DataFrame, metric: str = "SRCC") -> str:
    columns = list(matrix.columns)
    lines = [f"| variant | train \\ test ({metric}, median) | " + " | ".join(columns) + " |",
             "|" + "---|" * (len(columns) + 2)]
    for (variant, train), values in matrix.iterrows():
        lines.append(f"| {variant} | {train} | " + " | ".join(_num(values[c]) for c in columns) + " |")
    return "\n".join(lines) + "\n"


def write_report(study_dir: Path, spec: StudySpec, study_id: str, jobs: Sequence[Job]) -> ReportFiles:
    runs = collect_runs(study_dir, jobs)
    order = list(dict.fromkeys(row_label(job) for job in jobs))
    summary = summarise(runs, order, spec.reference, len(spec.seeds))
    in_domain = runs[runs["kind"] == "train"]
    finished = in_domain[in_domain["status"] == Status.FINISHED.value]
    if spec.reference is not None and not summary.empty:
        summary = add_significance(summary, finished, lambda row: _reference_row(row, spec.reference))
    folder = study_dir / "report"
    folder.mkdir(parents=True, exist_ok=True)
    files = ReportFiles(markdown=folder / "summary.md", summary_csv=folder / "summary.csv",
                        runs_csv=folder / "runs.csv", plot=None, cross_csv=None)
    runs.to_csv(files.runs_csv, index=False)
    summary.to_csv(files.summary_csv, index=False)
    plot = variant_plot(finished, order, folder / "srcc.png")
    text = [f"# {study_id}\n", f"{spec.description.strip()}\n" if spec.description else "",
            f"Test SRCC/PLCC over split seeds {spec.seeds}; deltas are medians minus the median of "
            f"`{spec.reference}`; `*`: the paired bootstrap's 95% interval of the delta excludes zero "
            "(see *Is the delta real?*).\n\n" if spec.reference else "Test SRCC/PLCC over the split seeds.\n\n",
            to_markdown(summary, spec.reference) if not summary.empty else "No finished job yet.\n"]
    matrix = cross_dataset_matrix(runs)
    cross_csv = None
    if not matrix.empty:
        cross_csv = folder / "cross_dataset.csv"
        matrix.to_csv(cross_csv)
        text += ["\n## Cross-dataset (train x test)\n\n", matrix_markdown(matrix)]
    if plot is not None:
        text.append(f"\n![per-variant SRCC]({plot.name})\n")
    analyses = [per_distortion_section(folder, finished, order), routing_section(folder, finished, order)]
    text += [significance_markdown(summary) if "paired_splits" in summary else "",
             *(analysis.markdown for analysis in analyses)]
    files.markdown.write_text("".join(text))
    return ReportFiles(files.markdown, files.summary_csv, files.runs_csv, plot, cross_csv, analyses)


def model_of(record: dict | None) -> str | None:
    """The model a run trained, named as its module (`biqa.models.lifeiqa.LifeIQA` -> lifeiqa)."""
    target = (((record or {}).get("config") or {}).get("model") or {}).get("net", {}).get("_target_")
    return target.rsplit(".", 2)[-2] if target else None


def published(model: str | None, dataset: str) -> dict[str, float]:
    """The paper's own SRCC/PLCC for `model` on `dataset` (NaN where the paper gives none)."""
    papers = OmegaConf.to_container(OmegaConf.load(PUBLISHED_FILE)) if PUBLISHED_FILE.exists() else {}
    scores = ((papers.get(model) or {}).get("scores") or {}).get(dataset) or {}
    return {f"published_{metric}": float(scores.get(metric, math.nan)) for metric in ("srcc", "plcc")}


def _reference_row(row: str, reference: str) -> str:
    """The reference's row at the same grid point (`variant[grid]` -> `reference[grid]`)."""
    return reference + row[row.index("["):] if "[" in row else reference


def _count(values: pd.Series) -> float:
    values = values.dropna()
    return float(values.median()) if len(values) else math.nan


def _num(value: float, signed: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:+.4f}" if signed else f"{value:.4f}"


def _mean_std(mean: float, std: float) -> str:
    if math.isnan(mean):
        return "-"
    return f"{mean:.4f} +/- {std:.4f}" if not math.isnan(std) else f"{mean:.4f}"


def _millions(count: float) -> str:
    if math.isnan(count):
        return "-"
    return f"{count / 1e6:.2f}M" if count >= 1e5 else f"{count / 1e3:.1f}K"
