import pytest
import torch

from biqa.models.backbones import Backbone
from biqa.models.blocks.attention import TransformerDecoderLayer
from biqa.models.lifeiqa import LifeIQA
from biqa.models.transformer_decoder import TransformerDecoderBaseline

LIFEIQA_DECODER = 8_209_158


class SwinBaseShapes(torch.nn.Module):
    """Random features of the shapes Swin-B gives a 224 crop (its last two stages); no compute."""

    is_backbone = True
    channels = [512, 1024]
    reductions = [16, 32]

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        n = images.shape[0]
        return [torch.randn(n, 512, 14, 14), torch.randn(n, 1024, 7, 7)]


def count(params) -> int:
    return sum(p.numel() for p in params)


def test_output_shape_and_finite_on_a_tiny_backbone():
    torch.manual_seed(0)
    backbone = Backbone("test_convnext", weights="none")
    model = TransformerDecoderBaseline(backbone, embed_dim=48, depth=2).eval()
    with torch.no_grad():
        out = model(torch.rand(3, 3, 64, 64))
    assert out.score.shape == (3,)
    assert torch.isfinite(out.score).all()
    assert out.aux_losses == {}


def test_gradients_reach_every_trainable_parameter():
    torch.manual_seed(0)
    model = TransformerDecoderBaseline(Backbone("test_convnext", weights="none"), embed_dim=48, depth=2)
    model(torch.rand(2, 3, 64, 64)).score.sum().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert p.grad.abs().sum() > 0, name


def test_structure_is_a_vanilla_pre_norm_decoder():
    model = TransformerDecoderBaseline(SwinBaseShapes())
    assert len(model.layers) == 4
    for layer in model.layers:
        assert isinstance(layer, TransformerDecoderLayer)
        assert layer.self_attention.attn.num_heads == 6
        assert layer.cross_attention.attn.embed_dim == 384
        assert layer.ffn.fc1.out_features == 960
    with torch.no_grad():
        assert model(torch.rand(2, 3, 224, 224)).score.shape == (2,)


def test_parameter_budget_matches_lifeiqa_within_one_percent():
    baseline = count(TransformerDecoderBaseline(SwinBaseShapes()).decoder_parameters())
    lifeiqa = count(LifeIQA(SwinBaseShapes()).decoder_parameters())
    assert lifeiqa == LIFEIQA_DECODER
    assert baseline == 8_288_641
    assert abs(baseline - lifeiqa) / lifeiqa < 0.01


def test_memory_and_guide_both_drive_the_score():
    torch.manual_seed(0)
    model = TransformerDecoderBaseline(SwinBaseShapes(), embed_dim=48).eval()
    stage3, stage4 = torch.randn(1, 512, 14, 14), torch.randn(1, 1024, 7, 7)

    def score(s3, s4):
        model.backbone.forward = lambda images: [s3, s4]
        with torch.no_grad():
            return model(torch.rand(1, 3, 224, 224)).score

    base = score(stage3, stage4)
    assert not torch.allclose(score(stage3 + torch.randn_like(stage3), stage4), base)
    assert not torch.allclose(score(stage3, stage4 + torch.randn_like(stage4)), base)


def test_cached_backbone_features_give_the_same_scores():
    torch.manual_seed(0)
    model = TransformerDecoderBaseline(Backbone("test_convnext", weights="none"), embed_dim=48).eval()
    images = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        expected = model(images).score
        torch.testing.assert_close(model(None, features=model.backbone(images)).score, expected)
    assert model.supports_cached_features


@pytest.mark.parametrize("depth", [1, 3])
def test_depth_switch(depth):
    model = TransformerDecoderBaseline(SwinBaseShapes(), embed_dim=48, depth=depth)
    assert len(model.layers) == depth
