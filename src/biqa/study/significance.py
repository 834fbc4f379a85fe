"""Is a variant's delta against the reference real? Two answers over the same splits, and how many splits
a delta of the observed size would take.

- **Paired bootstrap over test images** (the main evidence): within each split, the test images are
  resampled with replacement, the *same* resample scores both variants, and the delta of their SRCCs is
  averaged over the splits; 1,000 resamples give a percentile 95% interval of the mean paired delta. It
  measures how much the delta depends on which test images happened to be drawn, for the trained models
  as they are; it does not see training noise (another initialisation or split), which only more splits do.
- **Paired t-test of the per-split SRCCs** (seed by seed): it sees training and split noise, but with three
  splits it has two degrees of freedom and little power; a Wilcoxon signed-rank test cannot go below
  p = 0.25 on three pairs, so the t-test is the one reported.
- **Splits needed**: the smallest number of splits at which a two-sided paired t-test at alpha = 0.05 has
  80% power for the observed mean delta, taking the observed split-to-split std of the deltas as true.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

CONFIDENCE = 0.95
RESAMPLES = 1000
ALPHA = 0.05
POWER = 0.8
MAX_SPLITS = 1000


@dataclass(frozen=True)
class PairedSplit:
    """One split's test predictions of a variant and of the reference, on the same images in the same order."""

    seed: int
    score: np.ndarray
    variant: np.ndarray
    reference: np.ndarray


def pair_predictions(variant: pd.DataFrame, reference: pd.DataFrame, seed: int) -> PairedSplit:
    """Joins two `test_predictions.csv` tables of one split on the image name."""
    joined = variant[["image", "score", "prediction"]].merge(
        reference[["image", "prediction"]], on="image", suffixes=("_variant", "_reference"))
    if len(joined) < len(variant) or len(joined) < len(reference):
        raise ValueError(f"split {seed}: the variant and the reference were tested on different images "
                         f"({len(variant)} and {len(reference)}, {len(joined)} in common)")
    return PairedSplit(seed, joined["score"].to_numpy(float), joined["prediction_variant"].to_numpy(float),
                       joined["prediction_reference"].to_numpy(float))


def rowwise_srcc(predictions: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """SRCC of each row of `predictions` (R, n) against the same row of `scores` (R, n), ties averaged."""
    a = stats.rankdata(predictions, axis=1)
    b = stats.rankdata(scores, axis=1)
    a -= a.mean(axis=1, keepdims=True)
    b -= b.mean(axis=1, keepdims=True)
    denominator = np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return (a * b).sum(axis=1) / denominator


def bootstrap_delta(splits: Sequence[PairedSplit], resamples: int = RESAMPLES, seed: int = 0,
                    confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    """(mean over splits of SRCC(variant) - SRCC(reference), and its percentile interval): each resample
    draws every split's test images with replacement, one draw for both variants."""
    generator = np.random.default_rng(seed)
    observed, resampled = [], []
    for split in splits:
        observed.append(rowwise_srcc(split.variant[None], split.score[None])[0]
                        - rowwise_srcc(split.reference[None], split.score[None])[0])
        draw = generator.integers(0, len(split.score), size=(resamples, len(split.score)))
        scores = split.score[draw]
        resampled.append(rowwise_srcc(split.variant[draw], scores) - rowwise_srcc(split.reference[draw], scores))
    deltas = np.nanmean(np.stack(resampled), axis=0)
    tail = (1 - confidence) / 2
    low, high = np.nanquantile(deltas, [tail, 1 - tail])
    return float(np.mean(observed)), float(low), float(high)


def paired_t_test(variant: Sequence[float], reference: Sequence[float]) -> float:
    """Two-sided p-value of the paired t-test of per-split SRCCs (NaN with fewer than two splits, or when
    every split gives the same delta)."""
    deltas = np.asarray(variant, float) - np.asarray(reference, float)
    if deltas.size < 2 or np.allclose(deltas, deltas[0]):
        return math.nan
    return float(stats.ttest_rel(variant, reference).pvalue)


def splits_needed(mean_delta: float, std_delta: float, alpha: float = ALPHA, power: float = POWER,
                  limit: int = MAX_SPLITS) -> float:
    """The fewest splits n for which a two-sided paired t-test at `alpha` detects `mean_delta` with `power`
    when the per-split deltas have standard deviation `std_delta`; inf beyond `limit`, NaN if unknown."""
    if not (math.isfinite(mean_delta) and math.isfinite(std_delta)) or std_delta <= 0:
        return math.nan
    effect = abs(mean_delta) / std_delta
    for n in range(2, limit + 1):
        critical = stats.t.ppf(1 - alpha / 2, n - 1)
        shift = effect * math.sqrt(n)
        achieved = stats.nct.sf(critical, n - 1, shift) + stats.nct.cdf(-critical, n - 1, shift)
        if achieved >= power:
            return float(n)
    return math.inf


def compare(variant_runs: pd.DataFrame, reference_runs: pd.DataFrame,
            read_predictions, resamples: int = RESAMPLES) -> dict[str, float]:
    """Every figure of one variant against the reference over the splits both finished. `*_runs`: the
    finished runs (columns `seed`, `srcc`, `folder`); `read_predictions(folder)` -> its predictions table,
    or None if the run wrote none."""
    paired = variant_runs.merge(reference_runs, on="seed", suffixes=("_variant", "_reference"))
    result = {"paired_splits": len(paired), "delta_srcc_mean": math.nan, "delta_srcc_split_std": math.nan,
              "ci_low": math.nan, "ci_high": math.nan, "ci_excludes_zero": False, "t_test_p": math.nan,
              "splits_needed": math.nan}
    if paired.empty:
        return result
    deltas = paired["srcc_variant"].to_numpy(float) - paired["srcc_reference"].to_numpy(float)
    result["delta_srcc_mean"] = float(np.mean(deltas))
    result["delta_srcc_split_std"] = float(np.std(deltas, ddof=1)) if len(deltas) > 1 else math.nan
    result["t_test_p"] = paired_t_test(paired["srcc_variant"], paired["srcc_reference"])
    result["splits_needed"] = splits_needed(result["delta_srcc_mean"], result["delta_srcc_split_std"])
    splits = []
    for entry in paired.itertuples():
        variant, reference = read_predictions(entry.folder_variant), read_predictions(entry.folder_reference)
        if variant is None or reference is None:
            return result
        splits.append(pair_predictions(variant, reference, entry.seed))
    _, low, high = bootstrap_delta(splits, resamples)
    result.update(ci_low=low, ci_high=high, ci_excludes_zero=bool(low > 0 or high < 0))
    return result
