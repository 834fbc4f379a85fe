"""Loss terms: the score loss on biqa's [0, 1] scale or on the dataset's raw one."""

import pytest
import torch

from biqa.lit.losses import ScoreLoss
from biqa.models.base import QualityOutput


def loss(term: ScoreLoss, prediction: list[float], target: list[float]) -> float:
    return float(term(QualityOutput(score=torch.tensor(prediction)), {"score": torch.tensor(target)}))


def test_smooth_l1_on_the_raw_scale_acts_as_an_l1_of_raw_differences():
    # KonIQ's MOS_zscore spans 0-100: a 0.1 miss on [0, 1] is 10 points, in SmoothL1's linear part.
    raw = ScoreLoss(kind="smooth_l1", scale="raw")
    raw.use_score_range(100.0)
    assert loss(raw, [0.5, 0.2], [0.6, 0.2]) == pytest.approx((10 - 0.5) / 2)
    # On [0, 1] the same miss sits in the quadratic part: half a squared error.
    assert loss(ScoreLoss(kind="smooth_l1"), [0.5, 0.2], [0.6, 0.2]) == pytest.approx(0.5 * 0.01 / 2)


def test_the_raw_scale_needs_the_dataset_range_and_only_it_asks_for_it():
    assert not ScoreLoss().needs_score_range
    raw = ScoreLoss(scale="raw")
    assert raw.needs_score_range
    with pytest.raises(RuntimeError, match="scale=raw needs the dataset's score range"):
        loss(raw, [0.5], [0.5])
    with pytest.raises(ValueError, match="score loss scale 'percent' is unknown; choose one of unit, raw"):
        ScoreLoss(scale="percent")
