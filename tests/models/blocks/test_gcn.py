import pytest
import torch

from biqa.models.blocks.gcn import GraphConvNetwork, GraphConvolution, normalize_adjacency


def test_fixed_adjacency_is_the_normalised_complete_graph():
    gcn = GraphConvNetwork(24, num_nodes=6, adjacency="fixed")
    adjacency = gcn.normalized_adjacency()
    expected = torch.full((6, 6), 1 / 7) + torch.eye(6) / 7
    torch.testing.assert_close(adjacency, expected)
    assert adjacency.diagonal().allclose(torch.full((6,), 2 / 7))
    assert not any("adjacency" in name or "edge" in name for name, _ in gcn.named_parameters())
    assert "fixed_adjacency" not in gcn.state_dict()


def test_normalize_adjacency_matches_the_symmetric_formula():
    a = torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 2.0], [0.0, 2.0, 0.0]])
    with_loops = a + torch.eye(3)
    d = with_loops.sum(-1).rsqrt().diag()
    torch.testing.assert_close(normalize_adjacency(a), d @ with_loops @ d)


def test_learnable_adjacency_has_parameters_starts_fixed_and_learns():
    fixed = GraphConvNetwork(24, num_nodes=6, adjacency="fixed")
    learnable = GraphConvNetwork(24, num_nodes=6, adjacency="learnable")
    extra = sum(p.numel() for p in learnable.parameters()) - sum(p.numel() for p in fixed.parameters())
    assert extra == 36
    torch.testing.assert_close(learnable.normalized_adjacency(), fixed.normalized_adjacency())
    learnable(torch.randn(2, 6, 24)).square().sum().backward()
    assert learnable.edge_weights.grad is not None and learnable.edge_weights.grad.abs().sum() > 0
    with torch.no_grad():
        learnable.edge_weights[0, 1] += 3.0
    adjacency = learnable.normalized_adjacency()
    torch.testing.assert_close(adjacency, adjacency.T)
    assert (adjacency >= 0).all()
    assert adjacency[0, 1] > adjacency[0, 2]


def test_unknown_adjacency_is_rejected():
    with pytest.raises(ValueError):
        GraphConvNetwork(8, num_nodes=4, adjacency="dense")


def test_widths_parameter_count_and_init():
    torch.manual_seed(0)
    gcn = GraphConvNetwork(384, num_nodes=6)
    widths = [(layer.weight.shape[1], layer.weight.shape[0]) for layer in gcn.layers]
    assert widths == [(384, 192), (192, 96), (96, 384)]
    assert sum(p.numel() for p in gcn.parameters()) == 129_696
    for layer in gcn.layers:
        assert torch.count_nonzero(layer.bias) == 0
        # kaiming-uniform with the fan taken on the output width: bound sqrt(6 / out)
        bound = (6 / layer.weight.shape[0]) ** 0.5
        assert layer.weight.abs().max() <= bound
        assert layer.weight.abs().max() > 0.9 * bound


def test_graph_convolution_mixes_nodes_then_adds_bias():
    torch.manual_seed(0)
    layer = GraphConvolution(5, 3)
    torch.nn.init.normal_(layer.bias)
    x = torch.randn(2, 4, 5)
    adjacency = torch.rand(4, 4)
    expected = adjacency @ (x @ layer.weight.T) + layer.bias
    torch.testing.assert_close(layer(x, adjacency), expected)


def test_forward_shape_and_nodes_interact():
    torch.manual_seed(0)
    gcn = GraphConvNetwork(16, num_nodes=6)
    x = torch.randn(3, 6, 16)
    out = gcn(x)
    assert out.shape == x.shape
    # Changing one node changes the output of every other node (complete graph).
    x2 = x.clone()
    x2[:, 0] += 1.0
    moved = (gcn(x2) - out).abs().sum(-1)
    assert (moved[:, 1:] > 0).all()
