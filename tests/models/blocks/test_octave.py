import pytest
import torch

from biqa.models.blocks.octave import OctaveConv, OctaveConvBNAct, OctaveStack


def test_first_layer_splits_into_high_at_full_and_low_at_half_resolution():
    conv = OctaveConv(8, 16, alpha_in=0.0, alpha_out=0.5)
    high, low = conv(torch.randn(2, 8, 10, 12))
    assert high.shape == (2, 8, 10, 12)
    assert low.shape == (2, 8, 5, 6)


def test_odd_sizes_keep_low_at_ceil_half_and_high_at_full():
    conv = OctaveConv(16, 16, alpha_in=0.5, alpha_out=0.5)
    high, low = conv(torch.randn(1, 8, 9, 7), torch.randn(1, 8, 5, 4))
    assert high.shape == (1, 8, 9, 7)
    assert low.shape == (1, 8, 5, 4)


def test_middle_layer_exchanges_information_both_ways():
    torch.manual_seed(0)
    conv = OctaveConv(16, 16, alpha_in=0.5, alpha_out=0.5)
    high, low = torch.randn(1, 8, 8, 8), torch.randn(1, 8, 4, 4)
    out_high, out_low = conv(high, low)
    high_after_low_change, _ = conv(high, low + 1.0)
    _, low_after_high_change = conv(high + torch.randn_like(high), low)
    assert not torch.allclose(out_high, high_after_low_change)
    assert not torch.allclose(out_low, low_after_high_change)


def test_last_layer_keeps_only_the_high_frequency_output():
    conv = OctaveConv(16, 12, alpha_in=0.5, alpha_out=0.0)
    assert conv.high_to_low is None and conv.low_to_low is None
    high, low = conv(torch.randn(2, 8, 8, 8), torch.randn(2, 8, 4, 4))
    assert low is None
    assert high.shape == (2, 12, 8, 8)


def test_low_path_sees_only_the_pooled_content():
    # a 2x2 checkerboard has no content at half resolution: the low output of a bias-free split is zero
    conv = OctaveConv(1, 4, alpha_in=0.0, alpha_out=0.5)
    checker = (torch.arange(8).view(8, 1) + torch.arange(8).view(1, 8)) % 2 * 2.0 - 1.0
    high, low = conv(checker.view(1, 1, 8, 8))
    assert torch.count_nonzero(low) == 0
    assert high.abs().sum() > 0


def test_missing_low_input_is_refused():
    with pytest.raises(ValueError, match="low-frequency input"):
        OctaveConv(16, 16, alpha_in=0.5, alpha_out=0.5)(torch.randn(1, 8, 8, 8))


def test_bn_act_block_keeps_shapes_and_is_non_negative():
    block = OctaveConvBNAct(8, 16, alpha_in=0.0, alpha_out=0.5)
    high, low = block(torch.randn(2, 8, 8, 8))
    assert high.shape == (2, 8, 8, 8) and low.shape == (2, 8, 4, 4)
    assert high.min() >= 0 and low.min() >= 0


def test_stack_returns_a_plain_high_frequency_map():
    stack = OctaveStack(6, 16, depth=3, alpha=0.5)
    alphas = [(layer.conv.in_low, layer.conv.out_low) for layer in stack.layers]
    assert alphas == [(0, 8), (8, 8), (8, 0)]
    out = stack(torch.randn(2, 6, 9, 9))
    assert out.shape == (2, 16, 9, 9)


def test_stack_needs_a_split_and_a_merge():
    with pytest.raises(ValueError, match="at least 2"):
        OctaveStack(8, 8, depth=1)
