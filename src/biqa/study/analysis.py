"""What the study report adds beyond medians: whether each delta is real (`significance`), results per
distortion type and level (`per_distortion`) and where the experts' tokens come from (`routing`), each as
Markdown for summary.md, CSV and PNG files in the report folder, and tables/images for a W&B summary run."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from biqa.run_folder import PREDICTIONS_FILE, RESULT_FILE, ROUTING_FILE, read_json
from biqa.study import per_distortion, routing, significance

SIGNIFICANCE_COLUMNS = ["paired_splits", "delta_srcc_mean", "delta_srcc_split_std", "ci_low", "ci_high",
                        "ci_excludes_zero", "t_test_p", "splits_needed"]
SIGNIFICANCE_TEXT = (
    "`*` marks a dSRCC whose 95% interval excludes zero. The interval is a paired "
    "bootstrap over test images: within each split the test images are resampled with replacement, the same "
    "resample scores the variant and the reference, and the mean over splits of their SRCC delta is taken "
    f"({significance.RESAMPLES:,} resamples). It is the main evidence here: it says whether the delta would "
    "survive another draw of test images, for these trained models. It does not see training noise (another "
    "initialisation or split); the paired t-test over the per-split SRCCs does, but with three splits it has "
    "two degrees of freedom and little power (a Wilcoxon test cannot go below p = 0.25 on three pairs). "
    "*Splits for 80% power*: how many splits a paired t-test at alpha 0.05 would need to detect the observed "
    "mean delta with 80% power, if the observed split-to-split std of the deltas is the true one.\n\n")


@dataclass
class Analysis:
    markdown: str = ""
    files: list[Path] = field(default_factory=list)
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    """For the W&B summary run: name -> table."""
    images: dict[str, Path] = field(default_factory=dict)
    """For the W&B summary run: name -> PNG."""


def read_predictions(folder: str) -> pd.DataFrame | None:
    path = Path(folder) / PREDICTIONS_FILE
    return pd.read_csv(path) if path.exists() else None


def read_routing(folder: str) -> pd.DataFrame | None:
    path = Path(folder) / ROUTING_FILE
    return pd.read_csv(path) if path.exists() else None


def read_expert_count(folder: str) -> int | None:
    """The run's `model.net.num_experts` (Life-IQA, BFRD), from its record."""
    record = read_json(Path(folder) / RESULT_FILE) or {}
    net = ((record.get("config") or {}).get("model") or {}).get("net") or {}
    return net.get("num_experts")


def add_significance(summary: pd.DataFrame, finished: pd.DataFrame, reference_row) -> pd.DataFrame:
    """`summary` with the significance columns for every row against its reference row (same dataset).
    `finished`: the finished in-domain runs; `reference_row(row)` -> the reference's row for `row`."""
    summary = summary.copy()
    for column in SIGNIFICANCE_COLUMNS:
        summary[column] = False if column == "ci_excludes_zero" else math.nan
    for index, entry in summary.iterrows():
        reference = reference_row(entry["variant"])
        if reference is None or reference == entry["variant"]:
            continue
        runs = finished[finished["dataset"] == entry["dataset"]]
        variant_runs = runs[runs["row"] == entry["variant"]][["seed", "srcc", "folder"]]
        reference_runs = runs[runs["row"] == reference][["seed", "srcc", "folder"]]
        for column, value in significance.compare(variant_runs, reference_runs, read_predictions).items():
            summary.loc[index, column] = value
    return summary


def significance_markdown(summary: pd.DataFrame) -> str:
    rows = summary[summary["paired_splits"].fillna(0) > 0]
    if rows.empty:
        return ""
    lines = ["\n## Is the delta real?\n\n", SIGNIFICANCE_TEXT,
             "| dataset | variant | paired splits | mean dSRCC | 95% CI (bootstrap over images) | "
             "t-test p | std of dSRCC over splits | splits for 80% power |\n", "|" + "---|" * 8 + "\n"]
    for _, entry in rows.iterrows():
        interval = ("-" if math.isnan(entry["ci_low"]) else
                    f"[{entry['ci_low']:+.4f}, {entry['ci_high']:+.4f}]" + (" *" if entry["ci_excludes_zero"] else ""))
        lines.append(f"| {entry['dataset']} | {entry['variant']} | {int(entry['paired_splits'])} | "
                     f"{entry['delta_srcc_mean']:+.4f} | {interval} | {_p(entry['t_test_p'])} | "
                     f"{_plain(entry['delta_srcc_split_std'])} | {_count(entry['splits_needed'])} |\n")
    return "".join(lines)


def per_distortion_section(folder: Path, finished: pd.DataFrame, order: Sequence[str]) -> Analysis:
    long = per_distortion.per_distortion(finished, read_predictions)
    if long.empty:
        return Analysis()
    result = Analysis()
    long_csv = folder / "per_distortion.csv"
    long.to_csv(long_csv, index=False)
    result.files.append(long_csv)
    result.tables["per_distortion"] = long
    medians = {}
    if set(long["group"]) == {"mos_band"}:
        text = ["\n## Per MOS band\n\n",
                "Test SRCC within each fifth of the quality range (the images whose score falls in that quintile "
                "of the split's test scores; 1/5 = the worst), median over the splits; PLCC and every split in "
                "`per_distortion.csv`.\n"]
    else:
        text = ["\n## Per distortion type and level\n\n",
                "Test SRCC within each distortion type (all references and levels of that type) and within each "
                "level (all types at that level), median over the splits; PLCC and every split in "
                "`per_distortion.csv`.\n"]
    titles = {"type": "SRCC per distortion type", "level": "SRCC per distortion level",
              "mos_band": "SRCC per MOS band"}
    for group, title in titles.items():
        table = per_distortion.median_table(long, group, "srcc", order)
        if table.empty:
            continue
        medians[title] = table
        path = folder / f"per_distortion_{group}_srcc.csv"
        table.to_csv(path)
        result.files.append(path)
        result.tables[f"per_distortion_{group}_srcc"] = table.reset_index()
        text += [f"\n### {title}\n\n", _matrix_markdown(table)]
    png = per_distortion.heatmap(medians, folder / "per_distortion.png", "test SRCC, median over splits")
    if png is not None:
        result.files.append(png)
        result.images["per_distortion_heatmap"] = png
        text.append(f"\n![per-distortion SRCC]({png.name})\n")
    result.markdown = "".join(text)
    return result


def routing_section(folder: Path, finished: pd.DataFrame, order: Sequence[str]) -> Analysis:
    shares, figures = routing.analyse(finished, read_predictions, read_routing, read_expert_count)
    if figures.empty:
        return Analysis()
    result = Analysis()
    for name, table in (("routing_share", shares), ("routing_specialisation", figures)):
        path = folder / f"{name}.csv"
        table.to_csv(path, index=False)
        result.files.append(path)
        result.tables[name] = table
    kind = figures["label_kind"].iloc[0]
    text = ["\n## Expert routing\n\n",
            f"Mutual information between a token's expert and its image's {kind} (bits), per split, against "
            f"the same with the labels shuffled across the test images ({routing.PERMUTATIONS:,} "
            "permutations: mean and 95th percentile). `splits above shuffled` counts the splits whose MI "
            "exceeds the shuffled 95th percentile. H(expert) bounds the MI; MI(expert; token) is the same "
            "measure for the token's position (a query or grid cell): a router that sorts by position sorts "
            "by something other than the distortion. Per-split values in `routing_specialisation.csv`, shares "
            "in `routing_share.csv`.\n\n",
            "| dataset | variant | router | splits | MI (bits) | shuffled mean | shuffled 95% | splits above "
            "shuffled | H(expert) | experts used | MI(expert; token) |\n", "|" + "---|" * 11 + "\n"]
    rank = {name: position for position, name in enumerate(order)}
    grouped = figures.groupby(["dataset", "variant", "router"], sort=False)
    for (dataset, variant, router), rows in sorted(grouped, key=lambda item: (item[0][0], rank.get(item[0][1], 0))):
        above = int((rows["mi_bits"] > rows["mi_shuffled_q95"]).sum())
        text.append(f"| {dataset} | {variant} | {router} | {len(rows)} | {_range(rows['mi_bits'])} | "
                    f"{_bits(rows['mi_shuffled_mean'].mean())} | {_bits(rows['mi_shuffled_q95'].mean())} | "
                    f"{above}/{len(rows)} | {rows['expert_entropy_bits'].mean():.3f} | "
                    f"{_range(rows['experts_used'], plain=True)} of {rows['experts'].iloc[0]} | "
                    f"{_range(rows['mi_token_bits'])} |\n")
    text.append("\n(MI, MI(expert; token), experts used: mean over splits, with the range; H(expert): mean.)\n")
    for variant in sorted(dict.fromkeys(figures["variant"]), key=lambda name: rank.get(name, 0)):
        png = routing.share_maps(shares, variant, folder / f"routing_{_file_safe(variant)}.png")
        if png is not None:
            result.files.append(png)
            result.images[f"routing_map/{variant}"] = png
            text.append(f"\n![routing of {variant}]({png.name})\n")
    result.markdown = "".join(text)
    return result


def log_to_wandb(run, analyses: list[Analysis]) -> None:
    """Every analysis table and image into a W&B run (the study's summary run), under `analysis/`."""
    import wandb

    payload = {}
    for analysis in analyses:
        payload.update({f"analysis/{name}": wandb.Table(dataframe=table.reset_index(drop=True))
                        for name, table in analysis.tables.items()})
        payload.update({f"analysis/{name}": wandb.Image(str(path)) for name, path in analysis.images.items()})
    if payload:
        run.log(payload)


def _matrix_markdown(table: pd.DataFrame) -> str:
    columns = [str(c) for c in table.columns]
    several = len({index[0] for index in table.index}) > 1
    lines = ["| variant | " + " | ".join(columns) + " |\n", "|" + "---|" * (len(columns) + 1) + "\n"]
    for (dataset, variant), values in table.iterrows():
        name = f"{dataset}: {variant}" if several else variant
        lines.append(f"| {name} | " + " | ".join(_plain(v) for v in values.to_numpy(float)) + " |\n")
    return "".join(lines)


def _range(values: pd.Series, plain: bool = False) -> str:
    values = values.dropna()
    number = (lambda v: f"{v:.3g}") if plain else _bits  # a mean over splits: 3.33, not 3.33333
    if values.empty:
        return "-"
    if len(values) == 1 or values.min() == values.max():
        return number(values.iloc[0])
    return f"{number(values.mean())} ({number(values.min())} to {number(values.max())})"


def _bits(value: float) -> str:
    """Bits to 4 decimals, or 2 significant digits below 0.001 (a collapsed router's MI is ~1e-5)."""
    return f"{value:.4f}" if value == 0 or abs(value) >= 1e-3 else f"{value:.1e}"


def _plain(value: float) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.3f}"


def _p(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.3f}"


def _count(value: float) -> str:
    if math.isnan(value):
        return "-"
    return f"> {significance.MAX_SPLITS}" if math.isinf(value) else str(int(value))


def _file_safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "_-." else "_" for c in name)
