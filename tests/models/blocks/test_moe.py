import math

import pytest
import torch

from biqa.models.blocks.feedforward import FeedForward
from biqa.models.blocks.moe import MixtureOfExperts, TopKRouter, load_balance_loss, router_z_loss


@pytest.mark.parametrize("num_experts, top_k", [(4, 2), (8, 2), (4, 1), (2, 2)])
def test_router_keeps_exactly_top_k_gates_per_token(num_experts, top_k):
    torch.manual_seed(0)
    router = TopKRouter(16, num_experts, top_k)
    gates, indices, logits = router(torch.randn(3, 7, 16))
    assert gates.shape == logits.shape == (3, 7, num_experts)
    assert indices.shape == (3, 7, top_k)
    assert ((gates > 0).sum(-1) == top_k).all()
    torch.testing.assert_close(gates.sum(-1), torch.ones(3, 7))
    # The kept gates sit on the k largest logits.
    assert torch.equal(gates.gather(-1, indices) > 0, torch.ones_like(indices, dtype=torch.bool))
    kept_min = logits.gather(-1, indices).min(-1).values
    dropped = logits.masked_fill(gates > 0, float("-inf")).max(-1).values
    assert (kept_min >= dropped).all()


def test_router_rejects_top_k_above_expert_count():
    with pytest.raises(ValueError):
        TopKRouter(8, num_experts=2, top_k=3)


def _one_hot_gates(assignments: torch.Tensor, num_experts: int, top_k: int):
    """Gates splitting each token evenly over the experts listed in `assignments` (T, k)."""
    gates = torch.zeros(assignments.shape[0], num_experts).scatter(-1, assignments, 1.0 / top_k)
    return gates, assignments


def test_load_balance_is_one_for_uniform_top1_routing_and_higher_when_skewed():
    experts = torch.arange(8).remainder(4).unsqueeze(-1)  # tokens spread evenly over 4 experts
    uniform = load_balance_loss(*_one_hot_gates(experts, 4, 1), num_experts=4)
    assert uniform.item() == pytest.approx(1.0)
    skewed = load_balance_loss(*_one_hot_gates(torch.zeros(8, 1, dtype=torch.long), 4, 1), num_experts=4)
    assert skewed.item() == pytest.approx(4.0)


def test_load_balance_minimum_is_top_k_for_top2_routing():
    # The k-hot routing mask of the formula (as in the authors' code) sums to k per token, so balanced
    # top-2 routing gives 2.0 and all tokens on the same two experts gives E = 4.
    pairs = torch.tensor([[0, 1], [2, 3], [1, 2], [3, 0]])
    uniform = load_balance_loss(*_one_hot_gates(pairs, 4, 2), num_experts=4)
    assert uniform.item() == pytest.approx(2.0)
    skewed = load_balance_loss(*_one_hot_gates(torch.tensor([[0, 1]] * 4), 4, 2), num_experts=4)
    assert skewed.item() == pytest.approx(4.0)
    assert skewed > uniform


def test_z_loss_value():
    logits = torch.tensor([[0.0, 0.0, 0.0, 0.0], [1.0, 2.0, 3.0, 4.0]])
    expected = (math.log(4.0) ** 2 + torch.tensor([1.0, 2.0, 3.0, 4.0]).logsumexp(0).item() ** 2) / 2
    assert router_z_loss(logits).item() == pytest.approx(expected)


def test_moe_output_is_the_gated_sum_of_the_chosen_experts():
    torch.manual_seed(0)
    moe = MixtureOfExperts(12, num_experts=4, top_k=2, dropout=0.0).eval()
    x = torch.randn(2, 5, 12)
    out, aux = moe(x)
    assert out.shape == x.shape
    gates, indices, logits = moe.router(x)
    expected = torch.zeros_like(x)
    for b in range(2):
        for t in range(5):
            for e in indices[b, t].tolist():
                expected[b, t] += gates[b, t, e] * moe.experts[e](x[b, t])
    torch.testing.assert_close(out, expected)
    assert set(aux) == {"load_balance", "z_loss"}
    assert aux["z_loss"].item() == pytest.approx(router_z_loss(logits).item())
    assert aux["load_balance"].item() == pytest.approx(load_balance_loss(gates, indices, 4).item())


def test_moe_gradients_reach_router_and_every_expert():
    torch.manual_seed(0)
    moe = MixtureOfExperts(8, num_experts=4, top_k=2)
    out, aux = moe(torch.randn(3, 6, 8))
    (out.sum() + aux["load_balance"] + aux["z_loss"]).backward()
    for name, p in moe.named_parameters():
        assert p.grad is not None, name
    assert moe.router.proj.weight.grad.abs().sum() > 0


def test_single_expert_is_a_plain_mlp():
    torch.manual_seed(0)
    moe = MixtureOfExperts(10, num_experts=1, top_k=2, dropout=0.0)
    assert moe.router is None
    assert len(moe.experts) == 1 and isinstance(moe.experts[0], FeedForward)
    mlp = FeedForward(10, 40, activation="relu", dropout=0.0)
    mlp.load_state_dict(moe.experts[0].state_dict())
    x = torch.randn(4, 3, 10)
    out, aux = moe(x)
    assert aux == {}
    torch.testing.assert_close(out, mlp(x))
    assert sum(p.numel() for p in moe.parameters()) == 10 * 40 + 40 + 40 * 10 + 10


def test_moe_parameter_count_is_router_plus_experts():
    dim, experts = 384, 4
    moe = MixtureOfExperts(dim, num_experts=experts, top_k=2)
    expert = dim * 4 * dim + 4 * dim + 4 * dim * dim + dim
    assert sum(p.numel() for p in moe.parameters()) == experts * expert + dim * experts + experts
