"""Where each expert's tokens come from: routing share per expert by distortion type (by MOS band on
datasets without types) and how specialised the experts are, from the runs' `test_routing.csv`
(`biqa.lit.routing`) and `test_predictions.csv`.

Specialisation is the mutual information between a token's expert and its image's label, in bits: the
joint distribution is P(label, expert) = mean over test images of [image has label] x (the image's share of
gate weight on that expert, over its crops and tokens). Finite samples give a positive MI even when the
experts ignore the label, so the figure stands beside its shuffled-label baseline: the same MI with the
labels permuted across the test images (1,000 permutations; their mean, 95th percentile and the share at
or above the observed value, a permutation p-value). MI(expert; token position) is given beside it: a
router that sends each query/token position to its own expert whatever the image is specialised by
position, not by distortion. `experts_used` counts the experts with at least 1% of the gate weight: a
router that sends every token to the same top-k experts has collapsed, whatever its MI. Expert numbers mean nothing across splits (each split trains its own
experts), so every figure is per split.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from biqa.study.per_distortion import mos_bands  # noqa: E402

PERMUTATIONS = 1000
USED_SHARE = 0.01
"""An expert counts as used if it gets at least this share of all gate weight (a collapsed router uses k)."""


def image_labels(predictions: pd.DataFrame) -> tuple[str, pd.Series]:
    """("distortion type", the type of each image) where the dataset has types, else ("MOS band", the
    quintile of each image's score, 1 = lowest); indexed by image name."""
    table = predictions.set_index("image")
    if "distortion_type" in table and table["distortion_type"].notna().all():
        return "distortion type", table["distortion_type"].astype(str)
    return "MOS band", mos_bands(table["score"])


def image_shares(routing: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Router -> images x experts: each image's share of gate weight per expert (rows sum to one)."""
    shares = {}
    for router, subset in routing.groupby("router", sort=False):
        table = subset.pivot_table(index="image", columns="expert", values="weight", aggfunc="sum", fill_value=0.0)
        shares[router] = table.div(table.sum(axis=1), axis=0)
    return shares


def mutual_information(labels: np.ndarray, shares: np.ndarray) -> float:
    """MI in bits between a label (int per image, (N,)) and the expert (each image's shares, (N, E))."""
    return float(_mutual_information(labels[None], shares)[0])


def _mutual_information(labels: np.ndarray, shares: np.ndarray) -> np.ndarray:
    """MI for each row of `labels` (P, N) against the same `shares` (N, E)."""
    count = int(labels.max()) + 1
    onehot = np.eye(count)[labels]                                 # (P, N, L)
    joint = np.einsum("pnl,ne->ple", onehot, shares) / shares.shape[0]
    label_marginal = joint.sum(axis=2, keepdims=True)
    expert_marginal = joint.sum(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = joint * np.log2(joint / (label_marginal * expert_marginal))
    return np.nansum(terms, axis=(1, 2))


def entropy_bits(distribution: np.ndarray) -> float:
    distribution = distribution[distribution > 0]
    return float(-(distribution * np.log2(distribution)).sum())


def specialisation(labels: pd.Series, shares: pd.DataFrame, routing: pd.DataFrame, experts: int | None = None,
                   permutations: int = PERMUTATIONS, seed: int = 0) -> dict[str, float]:
    """MI(expert; label) against its shuffled baseline, H(expert), the experts used (of `experts`, else of
    those that got any weight), and MI(expert; token position)."""
    labels = labels.reindex(shares.index)
    codes = pd.factorize(labels)[0]
    values = shares.to_numpy(float)
    observed = mutual_information(codes, values)
    generator = np.random.default_rng(seed)
    shuffled = _mutual_information(np.stack([generator.permutation(codes) for _ in range(permutations)]), values)
    tokens = routing.pivot_table(index="token", columns="expert", values="weight", aggfunc="sum", fill_value=0.0)
    token_joint = tokens.to_numpy(float) / tokens.to_numpy(float).sum()
    return {"images": len(codes), "labels": int(codes.max()) + 1, "mi_bits": observed,
            "mi_shuffled_mean": float(shuffled.mean()), "mi_shuffled_q95": float(np.quantile(shuffled, 0.95)),
            "p_value": float((1 + (shuffled >= observed).sum()) / (1 + permutations)),
            "expert_entropy_bits": entropy_bits(values.mean(axis=0)),
            "experts_used": int((values.mean(axis=0) >= USED_SHARE).sum()), "experts": max(experts or 0, values.shape[1]),
            "mi_token_bits": _joint_mutual_information(token_joint) if len(tokens) > 1 else math.nan}


def _joint_mutual_information(joint: np.ndarray) -> float:
    outer = joint.sum(axis=1, keepdims=True) * joint.sum(axis=0, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(np.nansum(joint * np.log2(joint / outer)))


def analyse(runs: pd.DataFrame, read_predictions: Callable[[str], pd.DataFrame | None],
            read_routing: Callable[[str], pd.DataFrame | None],
            read_experts: Callable[[str], int | None] = lambda folder: None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(shares: one row per run, router, label, expert; specialisation: one row per run and router) over
    the finished runs (columns row, dataset, seed, folder) that recorded their routing. `read_experts(folder)`:
    the run's number of experts (the routing table holds only the chosen ones)."""
    share_rows, figure_rows = [], []
    for run in runs.itertuples():
        routing = read_routing(run.folder)
        predictions = read_predictions(run.folder)
        if routing is None or routing.empty or predictions is None:
            continue
        kind, labels = image_labels(predictions)
        key = {"dataset": run.dataset, "variant": run.row, "seed": run.seed}
        experts = read_experts(run.folder)
        for router, shares in image_shares(routing).items():
            if experts is not None:  # the experts no token went to, at share 0
                shares = shares.reindex(columns=range(max(experts, int(shares.columns.max()) + 1)), fill_value=0.0)
            by_label = shares.groupby(labels.reindex(shares.index)).mean()
            for label, row in by_label.iterrows():
                for expert, share in row.items():
                    share_rows.append({**key, "router": router, "label_kind": kind, "label": label,
                                       "expert": int(expert), "share": float(share)})
            figure_rows.append({**key, "router": router, "label_kind": kind,
                                **specialisation(labels, shares, routing[routing["router"] == router], experts)})
    return pd.DataFrame(share_rows), pd.DataFrame(figure_rows)


def share_maps(shares: pd.DataFrame, variant: str, output: Path) -> Path | None:
    """A label x expert map of routing shares per router (rows) and split (columns) of one variant."""
    subset = shares[shares["variant"] == variant]
    if subset.empty:
        return None
    routers = list(dict.fromkeys(subset["router"]))
    seeds = sorted(set(subset["seed"]))
    labels = list(dict.fromkeys(subset["label"]))
    figure, panels = plt.subplots(len(routers), len(seeds), squeeze=False, dpi=110,
                                  figsize=(0.9 + 2.2 * len(seeds), 0.9 + (0.8 + 0.22 * len(labels)) * len(routers)))
    for row, router in enumerate(routers):
        for column, seed in enumerate(seeds):
            panel = panels[row][column]
            cell = subset[(subset["router"] == router) & (subset["seed"] == seed)]
            table = cell.pivot_table(index="label", columns="expert", values="share").reindex(labels)
            image = panel.imshow(table.to_numpy(float), cmap="magma", vmin=0.0, vmax=1.0, aspect="auto")
            panel.set_xticks(range(table.shape[1]), [str(e) for e in table.columns], fontsize=7)
            panel.set_yticks(range(len(labels)), labels if column == 0 else [""] * len(labels), fontsize=6)
            panel.set_title(f"split {seed}: {router}", fontsize=7)
            panel.set_xlabel("expert", fontsize=7)
    figure.colorbar(image, ax=panels, fraction=0.03, label="share of gate weight")
    figure.suptitle(f"{variant}: routing share per expert by {subset['label_kind'].iloc[0]}", fontsize=9)
    figure.savefig(output, bbox_inches="tight")
    plt.close(figure)
    return output
