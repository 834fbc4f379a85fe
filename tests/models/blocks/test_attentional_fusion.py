import pytest
import torch

from biqa.models.blocks.attentional_fusion import (
    AdditiveFusion,
    AttentionalFusion,
    ConcatFusion,
    make_fusion,
)


@pytest.fixture
def pair():
    torch.manual_seed(0)
    return torch.randn(3, 16, 6, 5), torch.randn(3, 16, 6, 5)


def test_weights_lie_strictly_in_zero_one_and_vary_over_positions_and_samples(pair):
    fusion = AttentionalFusion(16, reduction=4)
    w = fusion.weights(*pair)
    assert w.shape == (3, 16, 6, 5)
    assert w.min() > 0 and w.max() < 1
    assert w.std(dim=(2, 3)).mean() > 0  # local branch: per position
    assert w.mean(dim=(2, 3)).std(dim=0).mean() > 0  # global branch: per sample


def test_output_is_the_aff_formula(pair):
    x, y = pair
    fusion = AttentionalFusion(16, reduction=4)
    w = torch.sigmoid(
        fusion.attention.local_branch(x + y) + fusion.attention.global_branch((x + y).mean(dim=(2, 3), keepdim=True))
    )
    torch.testing.assert_close(fusion(x, y), 2 * x * w + 2 * y * (1 - w))


def test_equal_inputs_give_twice_the_input_whatever_the_weights(pair):
    x, _ = pair
    fusion = AttentionalFusion(16, reduction=4)
    torch.testing.assert_close(fusion(x, x), 2 * x)


def test_gradients_reach_both_attention_branches_and_inputs(pair):
    x, y = (t.clone().requires_grad_() for t in pair)
    fusion = AttentionalFusion(16, reduction=4)
    fusion(x, y).square().sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in fusion.parameters())
    assert x.grad.abs().sum() > 0 and y.grad.abs().sum() > 0


def test_alternatives(pair):
    x, y = pair
    add = make_fusion("add", 16)
    assert isinstance(add, AdditiveFusion) and not list(add.parameters())
    torch.testing.assert_close(add(x, y), x + y)

    concat = make_fusion("concat", 16)
    assert isinstance(concat, ConcatFusion)
    out = concat(x, y)
    assert out.shape == x.shape
    assert not torch.allclose(concat(x, y + 1), out)
    assert isinstance(make_fusion("aff", 16, reduction=8), AttentionalFusion)


def test_unknown_kind_is_refused():
    with pytest.raises(ValueError, match="aff, add, concat"):
        make_fusion("sum", 16)
