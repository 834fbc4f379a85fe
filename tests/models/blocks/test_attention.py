import torch

from biqa.models.blocks.attention import CrossAttention, SelfAttention, TransformerDecoderLayer
from biqa.models.blocks.feedforward import FeedForward


def test_self_attention_is_permutation_equivariant_and_returns_the_update_only():
    torch.manual_seed(0)
    block = SelfAttention(16, num_heads=4).eval()
    x = torch.randn(2, 5, 16)
    perm = torch.randperm(5)
    out = block(x)
    torch.testing.assert_close(block(x[:, perm]), out[:, perm])
    # An update, not x + update: zeroing the output projection gives zeros.
    with torch.no_grad():
        block.attn.out_proj.weight.zero_()
        block.attn.out_proj.bias.zero_()
    assert torch.count_nonzero(block(x)) == 0


def test_cross_attention_reads_the_memory_and_normalises_only_queries():
    torch.manual_seed(0)
    block = CrossAttention(16, num_heads=4).eval()
    x, memory = torch.randn(2, 3, 16), torch.randn(2, 7, 16)
    out = block(x, memory)
    assert out.shape == x.shape
    assert not torch.allclose(block(x, memory + torch.randn_like(memory)), out)
    # Queries go through the pre-norm: shifting and scaling them changes nothing.
    torch.testing.assert_close(block(3 * x + 1, memory), out, atol=1e-4, rtol=1e-4)


def test_cross_attention_with_a_different_memory_width():
    block = CrossAttention(16, num_heads=4, memory_dim=24)
    assert block(torch.randn(2, 3, 16), torch.randn(2, 9, 24)).shape == (2, 3, 16)


def test_decoder_layer_parameter_count_and_shape():
    dim, hidden = 384, 960
    layer = TransformerDecoderLayer(dim, num_heads=6, ffn_hidden_dim=hidden)
    attention = 4 * dim * dim + 4 * dim
    expected = 2 * attention + 3 * 2 * dim + (2 * dim * hidden + hidden + dim)
    assert sum(p.numel() for p in layer.parameters()) == expected
    assert layer(torch.randn(2, 6, dim), torch.randn(2, 49, dim)).shape == (2, 6, dim)


def test_feedforward_layout():
    ffn = FeedForward(8, 32, activation="gelu", dropout=0.1)
    assert (ffn.fc1.in_features, ffn.fc1.out_features, ffn.fc2.out_features) == (8, 32, 8)
    assert isinstance(ffn.act, torch.nn.GELU) and ffn.drop.p == 0.1
