import numpy as np
import pytest
import torch
from scipy import stats

from biqa.metrics import QualityMetrics, correlation_metrics, fitted_plcc


def test_correlations_equal_scipy_on_random_data():
    rng = np.random.default_rng(0)
    target = rng.random(200)
    preds = target + rng.normal(0, 0.3, 200)
    ours = correlation_metrics(torch.tensor(preds), torch.tensor(target))
    assert ours["srcc"] == pytest.approx(stats.spearmanr(preds, target)[0], abs=1e-6)
    assert ours["plcc"] == pytest.approx(stats.pearsonr(preds, target)[0], abs=1e-6)
    assert ours["krcc"] == pytest.approx(stats.kendalltau(preds, target)[0], abs=1e-6)
    assert ours["rmse"] == pytest.approx(np.sqrt(np.mean((preds - target) ** 2)), abs=1e-6)


def test_spearman_with_ties_equals_scipy():
    preds = torch.tensor([0.1, 0.1, 0.3, 0.3, 0.5, 0.2])
    target = torch.tensor([1.0, 2.0, 2.0, 3.0, 5.0, 1.0])
    assert correlation_metrics(preds, target)["srcc"] == pytest.approx(stats.spearmanr(preds, target)[0], abs=1e-6)


def test_metric_counts_each_image_once_when_updates_repeat_it():
    rng = np.random.default_rng(1)
    preds, target = torch.tensor(rng.random(10)), torch.tensor(rng.random(10))
    index = torch.arange(10)
    metric = QualityMetrics()
    metric.update(preds[:7], target[:7], index[:7])
    metric.update(preds[5:], target[5:], index[5:])  # images 5 and 6 again, as a padded shard would send
    expected = correlation_metrics(preds, target)
    got = {k: float(v) for k, v in metric.compute().items()}
    assert got == pytest.approx(expected, abs=1e-6)


def test_metric_refuses_fewer_than_three_images():
    metric = QualityMetrics()
    metric.update(torch.tensor([0.1, 0.2]), torch.tensor([0.3, 0.4]), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="at least 3"):
        metric.compute()


def test_logistic_fit_improves_plcc_of_a_monotonic_nonlinear_mapping():
    x = torch.linspace(-3, 3, 100)
    y = 1 / (1 + torch.exp(-3 * x))
    raw = correlation_metrics(x, y)["plcc"]
    assert fitted_plcc(x, y) > raw
    assert fitted_plcc(x, y) > 0.999
