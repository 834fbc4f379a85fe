"""The routing recorder: gates of every router per test image, by record index, as a long table."""

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from biqa.lit.routing import RoutingRecorder, routers, routing_table
from biqa.models.blocks.moe import MixtureOfExperts


class TwoRouters(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.first = MixtureOfExperts(8, num_experts=4, top_k=2)
        self.second = MixtureOfExperts(8, num_experts=3, top_k=1)
        self.dense = MixtureOfExperts(8, num_experts=1, top_k=1)  # no router: a plain feed-forward

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.first(x)[0]
        return self.dense(x + self.second(x.mean(dim=1))[0][:, None])[0]


def run_test_batches(recorder: RoutingRecorder, net: nn.Module, batches: list[list[int]], crops: int, tokens: int):
    trainer = SimpleNamespace(world_size=1)
    recorder.on_test_start(trainer, net)
    for batch_idx, index in enumerate(batches):
        batch = {"index": torch.tensor(index)}
        recorder.on_test_batch_start(trainer, net, batch, batch_idx)
        net(torch.randn(len(index) * crops, tokens, 8))
        recorder.on_test_batch_end(trainer, net, None, batch, batch_idx)
    recorder.on_test_end(trainer, net)


def test_every_router_is_recorded_per_image_crop_and_token():
    torch.manual_seed(0)
    net = TwoRouters().eval()
    assert list(routers(net)) == ["first.router", "second.router"]
    recorder = RoutingRecorder()
    run_test_batches(recorder, net, [[5, 2, 7], [1, 9]], crops=2, tokens=6)
    indices, gates = recorder.per_image()
    assert indices.tolist() == [5, 2, 7, 1, 9]
    assert gates["first.router"].shape == (5, 2, 6, 4)
    assert gates["second.router"].shape == (5, 2, 1, 3)  # one decision per crop (pooled tokens)
    assert gates["first.router"].sum(-1) == pytest.approx(torch.ones(5, 2, 6))

    names = {i: f"img{i}.png" for i in range(10)}
    table = routing_table(recorder, [names.get(i, "") for i in range(10)])
    first = table[table["router"] == "first.router"]
    assert len(first) == 5 * 2 * 6 * 2  # images x crops x tokens x top-k
    assert len(table[table["router"] == "second.router"]) == 5 * 2 * 1 * 1
    assert set(table["image"]) == {"img5.png", "img2.png", "img7.png", "img1.png", "img9.png"}
    weights = first.groupby(["image", "crop", "token"])["weight"].sum()
    assert weights.to_numpy() == pytest.approx(1.0)


def test_hooks_are_removed_after_the_test_and_a_net_without_routers_gives_no_rows():
    net = TwoRouters().eval()
    recorder = RoutingRecorder()
    run_test_batches(recorder, net, [[0]], crops=1, tokens=3)
    recorded = len(recorder.gates["first.router"])
    net(torch.randn(1, 3, 8))
    assert len(recorder.gates["first.router"]) == recorded and not net.first.router._forward_hooks

    plain = RoutingRecorder()
    run_test_batches(plain, nn.Linear(8, 8), [[0, 1]], crops=1, tokens=3)
    assert routing_table(plain, ["a", "b"]).empty


@pytest.mark.parametrize("moe_style, tokens", [("sparse_ffn", 4), ("parallel_experts", 1)])
def test_bfrd_routing_per_distortion_token_or_per_image(moe_style, tokens):
    """BFRD's MoE feed-forward routes each of its distortion tokens (a 2x2 grid here); its parallel-experts
    gate makes one decision per crop."""
    from tests.models.test_bfrd import build

    net = build(moe_style=moe_style).eval()
    recorder = RoutingRecorder()
    trainer = SimpleNamespace(world_size=1)
    recorder.on_test_start(trainer, net)
    batch = {"index": torch.tensor([3, 4])}
    recorder.on_test_batch_start(trainer, net, batch, 0)
    with torch.no_grad():
        net(torch.rand(2 * 2, 3, 64, 64))
    recorder.on_test_batch_end(trainer, net, None, batch, 0)
    recorder.on_test_end(trainer, net)
    _, gates = recorder.per_image()
    assert [tuple(g.shape) for g in gates.values()] == [(2, 2, tokens, 4)]
