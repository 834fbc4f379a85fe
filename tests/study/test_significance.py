"""Paired significance of a variant's delta: row-wise SRCC, paired bootstrap over images, t-test, power."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from biqa.study.significance import (
    PairedSplit,
    bootstrap_delta,
    compare,
    pair_predictions,
    paired_t_test,
    rowwise_srcc,
    splits_needed,
)


def test_rowwise_srcc_is_scipys_spearman_with_ties():
    generator = np.random.default_rng(0)
    predictions = generator.integers(0, 5, size=(4, 30)).astype(float)
    scores = generator.normal(size=(4, 30))
    expected = [stats.spearmanr(p, s).statistic for p, s in zip(predictions, scores, strict=True)]
    assert rowwise_srcc(predictions, scores) == pytest.approx(expected)


def noisy_split(seed: int, variant_noise: float, reference_noise: float, images: int = 200) -> PairedSplit:
    generator = np.random.default_rng(seed)
    score = generator.uniform(size=images)
    return PairedSplit(seed, score, score + generator.normal(scale=variant_noise, size=images),
                       score + generator.normal(scale=reference_noise, size=images))


def test_bootstrap_interval_excludes_zero_for_a_clearly_better_variant():
    splits = [noisy_split(seed, 0.05, 0.4) for seed in range(3)]
    delta, low, high = bootstrap_delta(splits, resamples=500)
    assert 0 < low < delta < high
    observed = np.mean([rowwise_srcc(s.variant[None], s.score[None])[0]
                        - rowwise_srcc(s.reference[None], s.score[None])[0] for s in splits])
    assert delta == pytest.approx(observed)


def test_bootstrap_interval_covers_zero_for_two_equally_noisy_variants():
    delta, low, high = bootstrap_delta([noisy_split(seed, 0.3, 0.3) for seed in range(3)], resamples=500)
    assert low < 0 < high and low < delta < high


def test_paired_t_test_is_scipys_and_needs_two_splits():
    variant, reference = [0.70, 0.75, 0.72], [0.60, 0.71, 0.69]
    assert paired_t_test(variant, reference) == pytest.approx(stats.ttest_rel(variant, reference).pvalue)
    assert math.isnan(paired_t_test([0.7], [0.6]))


def test_splits_needed_follows_the_t_tests_power():
    # Effect size 1 (delta = std) needs 10 pairs for 80% power at alpha 0.05, effect 0.5 needs 34.
    assert splits_needed(0.1, 0.1) == 10
    assert splits_needed(-0.05, 0.1) == 34
    assert splits_needed(1e-4, 0.1) == math.inf
    assert math.isnan(splits_needed(0.1, math.nan))


def predictions_table(split: PairedSplit, which: str) -> pd.DataFrame:
    values = split.variant if which == "variant" else split.reference
    return pd.DataFrame({"image": [f"img{i}.png" for i in range(len(split.score))], "score": split.score,
                         "prediction": values})


def test_compare_pairs_runs_by_seed_and_images_by_name():
    splits = {seed: noisy_split(seed, 0.05, 0.4) for seed in range(3)}
    tables = {f"{which}{seed}": predictions_table(split, which)
              for seed, split in splits.items() for which in ("variant", "reference")}
    # The reference's rows come in another order: the join is by image name.
    tables = {name: table.sample(frac=1.0, random_state=1) if name.startswith("reference") else table
              for name, table in tables.items()}

    def srcc(split, which):
        return rowwise_srcc((split.variant if which == "variant" else split.reference)[None], split.score[None])[0]

    runs = {which: pd.DataFrame({"seed": list(splits), "srcc": [srcc(s, which) for s in splits.values()],
                                 "folder": [f"{which}{seed}" for seed in splits]}) for which in ("variant", "reference")}
    result = compare(runs["variant"], runs["reference"].iloc[::-1], tables.get, resamples=300)
    assert result["paired_splits"] == 3 and result["ci_excludes_zero"]
    assert result["ci_low"] < result["delta_srcc_mean"] < result["ci_high"]
    assert result["delta_srcc_mean"] == pytest.approx(np.mean([srcc(s, "variant") - srcc(s, "reference")
                                                               for s in splits.values()]))
    assert result["t_test_p"] < 0.05 and result["splits_needed"] >= 2


def test_compare_without_predictions_gives_the_split_figures_only():
    runs = pd.DataFrame({"seed": [0, 1], "srcc": [0.5, 0.6], "folder": ["a", "b"]})
    result = compare(runs.assign(srcc=[0.6, 0.65]), runs, lambda folder: None)
    assert result["delta_srcc_mean"] == pytest.approx(0.075) and math.isnan(result["ci_low"])
    assert not result["ci_excludes_zero"]


def test_predictions_of_different_images_are_refused():
    split = noisy_split(0, 0.1, 0.1, images=10)
    variant, reference = predictions_table(split, "variant"), predictions_table(split, "reference").iloc[:8]
    with pytest.raises(ValueError, match="different images"):
        pair_predictions(variant, reference, 0)
