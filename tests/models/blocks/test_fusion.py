import pytest
import torch

from biqa.models.blocks.fusion import BidirectionalFusion, resize_to

CHANNELS = (4, 6, 8, 10)


def _features(batch=2, size=32):
    return [torch.randn(batch, c, size // 2**i, size // 2**i) for i, c in enumerate(CHANNELS)]


@pytest.mark.parametrize(("output_level", "side"), [(0, 32), (2, 8), (-1, 4)])
@pytest.mark.parametrize("merge", ["concat", "sum"])
def test_output_lives_on_the_chosen_grid(output_level, side, merge):
    fusion = BidirectionalFusion(CHANNELS, width=12, output_level=output_level, merge=merge)
    assert fusion(_features()).shape == (2, 12, side, side)


def test_top_down_only_drops_the_bottom_up_convs():
    both = BidirectionalFusion(CHANNELS, width=12)
    top_down = BidirectionalFusion(CHANNELS, width=12, top_down_only=True)
    assert top_down.bottom_up is None and len(both.bottom_up) == 3
    extra = sum(p.numel() for p in both.parameters()) - sum(p.numel() for p in top_down.parameters())
    assert extra == 3 * (12 * 12 * 9 + 12)


def _sensitivity(fusion, level):
    """Whether the output moves when the input of `level` moves."""
    torch.manual_seed(0)
    features = _features(batch=1)
    with torch.no_grad():
        base = fusion(features)
        features[level] = features[level] + torch.randn_like(features[level])
        return not torch.allclose(fusion(features), base)


def _level_moves(fusion, level, source):
    """Whether the fused map of `level` moves when the input stage `source` moves."""
    torch.manual_seed(0)
    features = _features(batch=1)
    with torch.no_grad():
        base = fusion.levels(features)[level]
        features[source] = features[source] + torch.randn_like(features[source])
        return not torch.allclose(fusion.levels(features)[level], base)


def test_each_pass_carries_information_in_its_direction():
    both = BidirectionalFusion(CHANNELS, width=12)
    top_down = BidirectionalFusion(CHANNELS, width=12, top_down_only=True)
    for fusion in (both, top_down):
        assert _level_moves(fusion, level=0, source=3)  # coarse semantics reach the finest level
    assert _level_moves(both, level=3, source=0)  # fine detail reaches the coarsest level...
    assert not _level_moves(top_down, level=3, source=0)  # ...only through the bottom-up pass


def test_every_stage_reaches_the_output_and_every_parameter_gets_a_gradient():
    for top_down_only in (False, True):
        fusion = BidirectionalFusion(CHANNELS, width=12, output_level=2, top_down_only=top_down_only)
        for level in range(4):
            assert _sensitivity(fusion, level)
        fusion(_features()).square().mean().backward()
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in fusion.parameters())


def test_odd_map_sides_are_handled():
    # A 30 px input gives stage sides 8, 4, 2, 1 in a CNN but ceil-halving gives 15, 8, 4, 2 here.
    features = [torch.randn(1, c, s, s) for c, s in zip(CHANNELS, (15, 8, 4, 2), strict=True)]
    assert BidirectionalFusion(CHANNELS, width=12, output_level=1)(features).shape == (1, 12, 8, 8)
    features = [torch.randn(1, c, s, s) for c, s in zip(CHANNELS, (13, 7, 4, 2), strict=True)]
    assert BidirectionalFusion(CHANNELS, width=12, output_level=0)(features).shape == (1, 12, 13, 13)


def test_resize_to_pools_down_and_interpolates_up():
    x = torch.arange(16.0).view(1, 1, 4, 4)
    assert torch.equal(resize_to(x, (2, 2)), torch.tensor([[[[2.5, 4.5], [10.5, 12.5]]]]))
    assert resize_to(x, (8, 8)).shape == (1, 1, 8, 8)
    assert resize_to(x, (4, 4)) is x


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="two feature levels"):
        BidirectionalFusion((4,), width=8)
    with pytest.raises(ValueError, match="output_level"):
        BidirectionalFusion(CHANNELS, width=8, output_level=4)
    with pytest.raises(ValueError, match="merge"):
        BidirectionalFusion(CHANNELS, width=8, merge="max")
