"""SRCC/PLCC per distortion type and per distortion level, for every variant, from the runs'
`test_predictions.csv` (which carry `distortion_type` and `distortion_level` where the dataset has them:
synthetic, KADID-10k, TID2013, CSIQ, LIVE, PIPAL); per MOS band on datasets without such labels (authentic
photos: KonIQ, SPAQ, BIQ2021, ...), the band being the quintile of the image's score among the split's test
images, so that the table says where in the quality range a model orders photos well.

A group's correlation is over the test images of that group in one split; the tables give the median over
the splits. Within one type the images differ in reference and level, so its SRCC says how well a model
orders that kind of damage; within one level they differ in type, so it says how well a model puts
different kinds of damage of similar strength on one scale.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from scipy import stats  # noqa: E402

GROUPS = {"type": "distortion_type", "level": "distortion_level"}
MOS_BANDS = 5
MIN_IMAGES = 3
"""Fewer images in a group than this give no correlation (NaN)."""


def group_correlations(predictions: pd.DataFrame) -> pd.DataFrame:
    """One row per (group, label) of one run: n, SRCC and PLCC over that group's test images."""
    rows = []
    for group, column in GROUPS.items():
        if column not in predictions or predictions[column].isna().all():
            continue
        for label, subset in predictions.dropna(subset=[column]).groupby(column, sort=True):
            rows.append({"group": group, "label": _label(label), "n": len(subset),
                         **correlations(subset["prediction"].to_numpy(float), subset["score"].to_numpy(float))})
    if not rows:
        for label, subset in predictions.groupby(mos_bands(predictions["score"]), sort=True):
            rows.append({"group": "mos_band", "label": label, "n": len(subset),
                         **correlations(subset["prediction"].to_numpy(float), subset["score"].to_numpy(float))})
    return pd.DataFrame(rows, columns=["group", "label", "n", "srcc", "plcc"])


def mos_bands(scores: pd.Series) -> pd.Series:
    """Each image's MOS band, "MOS b/5" for the b-th quintile of `scores` (1 = lowest quality)."""
    bands = pd.qcut(scores.rank(method="first"), MOS_BANDS, labels=False) + 1
    return bands.map(lambda band: f"MOS {band}/{MOS_BANDS}")


def correlations(prediction: np.ndarray, score: np.ndarray) -> dict[str, float]:
    if len(score) < MIN_IMAGES or np.ptp(score) == 0 or np.ptp(prediction) == 0:
        return {"srcc": math.nan, "plcc": math.nan}
    return {"srcc": float(stats.spearmanr(prediction, score).statistic),
            "plcc": float(stats.pearsonr(prediction, score).statistic)}


def per_distortion(runs: pd.DataFrame, read_predictions: Callable[[str], pd.DataFrame | None]) -> pd.DataFrame:
    """Per-group correlations of every finished in-domain run (columns of `runs`: row, dataset, seed,
    folder), one row per (dataset, variant row, seed, group, label); empty if no run has labels."""
    tables = []
    for run in runs.itertuples():
        predictions = read_predictions(run.folder)
        if predictions is None:
            continue
        table = group_correlations(predictions)
        if not table.empty:
            tables.append(table.assign(dataset=run.dataset, variant=run.row, seed=run.seed))
    if not tables:
        return pd.DataFrame()
    return pd.concat(tables, ignore_index=True)[["dataset", "variant", "seed", "group", "label", "n", "srcc", "plcc"]]


def median_table(long: pd.DataFrame, group: str, metric: str, order: Sequence[str]) -> pd.DataFrame:
    """(dataset, variant) x label: the median of `metric` over the splits, variants in study order."""
    subset = long[long["group"] == group]
    if subset.empty:
        return pd.DataFrame()
    table = subset.pivot_table(index=["dataset", "variant"], columns="label", values=metric, aggfunc="median",
                               sort=False)
    labels = list(dict.fromkeys(subset["label"]))
    rank = {name: position for position, name in enumerate(order)}
    table = table.reindex(columns=labels)
    return table.iloc[sorted(range(len(table)), key=lambda i: (table.index[i][0], rank.get(table.index[i][1], 0)))]


def heatmap(tables: dict[str, pd.DataFrame], output: Path, title: str) -> Path | None:
    """One panel per table (e.g. per type, then per level) stacked, rows (dataset, variant), colour = SRCC."""
    tables = {name: table for name, table in tables.items() if not table.empty}
    if not tables:
        return None
    columns = max(table.shape[1] for table in tables.values())
    heights = [1.6 + 0.3 * len(table) for table in tables.values()]
    figure, panels = plt.subplots(len(tables), 1, figsize=(2.8 + 0.5 * columns, sum(heights)), dpi=110,
                                  squeeze=False, gridspec_kw={"height_ratios": heights})
    for panel, (name, table) in zip(panels[:, 0], tables.items(), strict=True):
        values = table.to_numpy(float)
        image = panel.imshow(values, cmap="viridis", vmin=np.nanmin([0.0, np.nanmin(values)]), vmax=1.0,
                             aspect="auto")
        for (i, j), value in np.ndenumerate(values):
            if math.isfinite(value):
                panel.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=6,
                           color="white" if value < 0.6 else "black")
        panel.set_xticks(range(table.shape[1]), [str(c) for c in table.columns], rotation=60, ha="right",
                         fontsize=7)
        panel.set_yticks(range(len(table)), [_row_name(index, table) for index in table.index], fontsize=7)
        panel.set_title(name, fontsize=8)
        figure.colorbar(image, ax=panel, fraction=0.04)
    figure.suptitle(title, fontsize=9)
    figure.tight_layout()
    figure.savefig(output)
    plt.close(figure)
    return output


def _row_name(index: tuple[str, str], table: pd.DataFrame) -> str:
    datasets = {i[0] for i in table.index}
    return index[1] if len(datasets) == 1 else f"{index[0]}: {index[1]}"


def _label(value) -> str:
    """Levels are numbers; a float read back from a CSV column with gaps prints without its '.0'."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
