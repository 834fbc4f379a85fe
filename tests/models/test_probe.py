"""The stage-statistics probe: the mean and std of every stage of one or more backbones, scaled, through one
head or a head per backbone."""

import pytest
import torch

from biqa.models.backbones import Backbone
from biqa.models.probe import StageStatisticsProbe


def frozen_backbone() -> Backbone:
    torch.manual_seed(0)
    return Backbone("test_efficientnet", out_indices=(0, 1, 2, 3, 4), freeze="all")


def test_statistics_are_every_stages_channel_means_then_stds():
    backbone = frozen_backbone()
    probe = StageStatisticsProbe(backbone)
    images = torch.rand(3, 3, 40, 40)
    maps = backbone(images)
    stats = probe.statistics(images)
    assert stats.shape == (3, 2 * sum(backbone.channels))
    first = maps[0].flatten(2)
    torch.testing.assert_close(stats[:, : backbone.channels[0]], first.mean(dim=2))
    offset = sum(backbone.channels)
    torch.testing.assert_close(stats[:, offset: offset + backbone.channels[0]], first.std(dim=2, correction=0))
    torch.testing.assert_close(probe.statistics(None, maps), stats)


def test_it_starts_at_the_middle_and_scores_with_its_scaling():
    probe = StageStatisticsProbe(frozen_backbone())
    images = torch.rand(2, 3, 40, 40)
    assert torch.allclose(probe(images).score, torch.full((2,), 0.5))
    with torch.no_grad():
        probe.head.weight.fill_(1.0)
        probe.feature_scale.fill_(2.0)
    expected = (probe.statistics(images) / 2).sum(dim=1) + 0.5
    torch.testing.assert_close(probe(images).score, expected)


def test_a_trainable_backbone_is_refused():
    with pytest.raises(ValueError, match="freeze=all"):
        StageStatisticsProbe(Backbone("test_efficientnet", out_indices=(0, 1)))


def test_extra_backbones_append_their_statistics_and_mean_gives_each_its_own_head():
    first, extra = frozen_backbone(), Backbone("test_resnet", freeze="all")
    images = torch.rand(2, 3, 40, 40)
    concat = StageStatisticsProbe(first, extra_backbones=[extra])
    stats = concat.statistics(images)
    own = 2 * sum(first.channels)
    assert stats.shape == (2, own + 2 * sum(extra.channels))
    torch.testing.assert_close(stats[:, :own], StageStatisticsProbe(first).statistics(images))
    assert not concat.supports_cached_features   # the store holds one backbone's maps
    assert [part for _, part in concat.heads()] == [slice(0, stats.shape[1])]

    mean = StageStatisticsProbe(first, extra_backbones=[extra], combine="mean")
    (head, own_part), (extra_head, extra_part) = mean.heads()
    assert own_part == slice(0, own) and extra_part == slice(own, stats.shape[1])
    with torch.no_grad():
        head.weight.fill_(1.0)
        extra_head.bias.fill_(0.1)
    expected = (stats[:, :own].sum(dim=1) + 0.5 + 0.1) / 2
    torch.testing.assert_close(mean(images).score, expected)


def test_an_unknown_combination_lists_the_choices():
    with pytest.raises(ValueError, match="model.net.combine=sum is unknown; choose one of concat, mean"):
        StageStatisticsProbe(frozen_backbone(), combine="sum")
