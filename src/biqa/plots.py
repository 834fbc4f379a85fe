"""PNG figures of runs and studies (matplotlib's Agg backend: no display needed)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from scipy import stats  # noqa: E402


def scatter_plot(predictions_csv: Path, output: Path, title: str = "") -> Path | None:
    """Predicted score against MOS (both on the normalised [0, 1] scale) from a run's test_predictions.csv."""
    if not predictions_csv.exists():
        return None
    table = pd.read_csv(predictions_csv)
    if len(table) < 2:
        return None
    srcc = stats.spearmanr(table["prediction"], table["score"]).statistic
    plcc = stats.pearsonr(table["prediction"], table["score"]).statistic
    figure, axes = plt.subplots(figsize=(4.2, 4.2), dpi=110)
    axes.scatter(table["score"], table["prediction"], s=10, alpha=0.6)
    low = min(table["score"].min(), table["prediction"].min())
    high = max(table["score"].max(), table["prediction"].max())
    axes.plot([low, high], [low, high], color="grey", linewidth=0.8, linestyle="--")
    axes.set_xlabel("MOS (normalised)")
    axes.set_ylabel("prediction")
    axes.set_title(f"{title}\nSRCC {srcc:.4f}  PLCC {plcc:.4f}  n={len(table)}", fontsize=8)
    figure.tight_layout()
    figure.savefig(output)
    plt.close(figure)
    return output


def variant_plot(runs: pd.DataFrame, order: list[str], output: Path, metric: str = "srcc") -> Path | None:
    """Per-variant `metric` of every finished split (dots), their median (bar) and range, one panel per dataset."""
    if runs.empty:
        return None
    datasets = list(dict.fromkeys(runs["dataset"]))
    figure, panels = plt.subplots(1, len(datasets), figsize=(1.2 + 0.55 * len(order) * len(datasets), 4),
                                  dpi=110, squeeze=False)
    for panel, dataset in zip(panels[0], datasets, strict=True):
        subset = runs[runs["dataset"] == dataset]
        for position, row_name in enumerate(order):
            values = subset.loc[subset["row"] == row_name, metric].dropna().to_numpy()
            if values.size == 0:
                continue
            jitter = np.linspace(-0.12, 0.12, values.size) if values.size > 1 else np.zeros(1)
            panel.scatter(position + jitter, values, s=14, alpha=0.7, color="tab:blue")
            panel.vlines(position, values.min(), values.max(), color="tab:blue", linewidth=1)
            panel.hlines(np.median(values), position - 0.25, position + 0.25, color="black", linewidth=1.5)
        panel.set_xticks(range(len(order)), order, rotation=45, ha="right", fontsize=8)
        panel.set_title(dataset, fontsize=9)
        panel.set_ylabel(f"test {metric.upper()} (median bar, one dot per split)")
        panel.grid(axis="y", alpha=0.3)
    figure.tight_layout()
    figure.savefig(output)
    plt.close(figure)
    return output
