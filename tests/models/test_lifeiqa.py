from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf

from biqa.models.backbones import Backbone
from biqa.models.base import QualityOutput
from biqa.models.blocks.attention import CrossAttention, SelfAttention
from biqa.models.blocks.gcn import GraphConvNetwork
from biqa.models.blocks.tokens import PooledMemory
from biqa.models.lifeiqa import LifeIQA

CONF = Path(__file__).resolve().parents[2] / "conf"
ABLATIONS = sorted((CONF / "ablation" / "lifeiqa").glob("*.yaml"))
SWIN_B_BACKBONE = 86_741_176


def tiny_backbone(name: str = "test_efficientnet") -> Backbone:
    # test_efficientnet has five feature levels; its last two (48 @ /16, 64 @ /32) play stages 3 and 4.
    out_indices = (1, 2, 3, 4) if name == "test_efficientnet" else (0, 1, 2, 3)
    return Backbone(name, weights="none", out_indices=out_indices)


def count(params) -> int:
    return sum(p.numel() for p in params)


def net_args(*overrides: Path) -> dict:
    """The constructor arguments of conf/model/lifeiqa.yaml, with ablation files merged on top."""
    net = OmegaConf.load(CONF / "model" / "lifeiqa.yaml").net
    for path in overrides:
        net = OmegaConf.merge(net, OmegaConf.load(path).model.net)
    args = OmegaConf.to_container(net)
    del args["_target_"], args["backbone"]
    return args


@pytest.fixture(scope="module")
def swin_base() -> Backbone:
    """The project's swin_base backbone config without weights, on the meta device: shapes and counts only."""
    cfg = OmegaConf.load(CONF / "model" / "backbone" / "swin_base.yaml")
    cfg.weights = "none"
    with torch.device("meta"):
        return instantiate(cfg)


@pytest.mark.parametrize("backbone_name", ["test_efficientnet", "test_convnext"])
def test_output_shape_finite_and_named_aux_losses(backbone_name):
    torch.manual_seed(0)
    model = LifeIQA(tiny_backbone(backbone_name), embed_dim=48, num_heads=6).eval()
    with torch.no_grad():
        out = model(torch.rand(3, 3, 64, 64))
    assert isinstance(out, QualityOutput)
    assert out.score.shape == (3,)
    assert torch.isfinite(out.score).all()
    assert set(out.aux_losses) == {"load_balance", "z_loss"}
    assert all(v.ndim == 0 and torch.isfinite(v) for v in out.aux_losses.values())
    # top-2 of 4 experts: the balance loss lies between its minimum (top_k) and E.
    assert 2.0 - 1e-5 <= out.aux_losses["load_balance"].item() <= 4.0 + 1e-5
    assert out.aux_losses["z_loss"].item() > 0


@pytest.mark.parametrize("overrides", [{}, {"adjacency": "learnable"}, {"moe_placement": "every_layer"}])
def test_gradients_reach_every_trainable_parameter(overrides):
    torch.manual_seed(0)
    model = LifeIQA(tiny_backbone(), embed_dim=48, num_heads=6, depth=2, **overrides).train()
    out = model(torch.rand(2, 3, 64, 64))
    (out.score.sum() + sum(out.aux_losses.values())).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        # An expert that no token chose gets an exact zero gradient; everything else must move.
        if ".experts." not in name:
            assert p.grad.abs().sum() > 0, name


def test_stage3_is_pooled_onto_the_stage4_grid():
    model = LifeIQA(tiny_backbone("test_convnext"), embed_dim=24, num_heads=6).eval()
    shapes = []
    model.memory.register_forward_hook(lambda m, args, out: shapes.append(out.shape))
    with torch.no_grad():
        model(torch.rand(2, 3, 96, 96))  # stage 4 at /32: 3x3
    assert shapes == [(2, 9, 24)]


def test_adaptive_pool_equals_the_windowed_mean_of_2x2_windows():
    torch.manual_seed(0)
    stage3 = torch.randn(2, 512, 14, 14)
    memory = PooledMemory(512, 512)
    with torch.no_grad():
        memory.proj.weight.copy_(torch.eye(512))
        memory.proj.bias.zero_()
        tokens = memory(stage3, grid=(7, 7))
    windows = [
        stage3[:, :, 2 * i : 2 * i + 2, 2 * j : 2 * j + 2].mean(dim=(-1, -2)) for i in range(7) for j in range(7)
    ]
    torch.testing.assert_close(tokens, torch.stack(windows, dim=1))


def test_paper_structure_and_init():
    torch.manual_seed(0)
    model = LifeIQA(tiny_backbone())
    assert len(model.layers) == 4
    for layer in model.layers:
        assert isinstance(layer.interaction, GraphConvNetwork)
        assert layer.interaction.adjacency_kind == "fixed"
        assert isinstance(layer.cross_attention, CrossAttention)
        assert layer.cross_attention.attn.num_heads == 6 and layer.cross_attention.attn.embed_dim == 384
        assert layer.moe is None
    assert model.queries.queries.shape == (1, 6, 384)
    assert model.queries.queries.std().item() == pytest.approx(0.02, abs=0.003)
    assert model.moe.gamma.item() == pytest.approx(0.1)
    assert len(model.moe.moe.experts) == 4 and model.moe.moe.router.top_k == 2
    assert isinstance(model.moe.norm, torch.nn.Identity)  # the final LayerNorm already feeds it
    assert model.head.dropout.p == pytest.approx(0.1)


def test_parameter_parity_with_the_authors_swin_base(swin_base):
    assert count(swin_base.parameters()) == SWIN_B_BACKBONE
    assert swin_base.channels[-2:] == [512, 1024] and swin_base.reductions[-2:] == [16, 32]
    for experts, total in [(4, 94_950_334), (8, 99_678_146), (2, 92_586_428)]:
        with torch.device("meta"):
            model = LifeIQA(swin_base, num_experts=experts)
        assert count(model.parameters()) == total, experts
        if experts == 4:
            assert count(model.decoder_parameters()) == 8_209_158


class SwinBaseShapes(torch.nn.Module):
    """Random features of the shapes Swin-B gives a 224 crop (its last two stages); no compute."""

    is_backbone = True
    channels = [512, 1024]
    reductions = [16, 32]

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        n = images.shape[0]
        return [torch.randn(n, 512, 14, 14), torch.randn(n, 1024, 7, 7)]


def test_paper_setting_shapes():
    torch.manual_seed(0)
    model = LifeIQA(SwinBaseShapes()).eval()
    shapes = []
    model.memory.register_forward_hook(lambda m, args, out: shapes.append(out.shape))
    with torch.no_grad():
        out = model(torch.rand(2, 3, 224, 224))
    assert shapes == [(2, 49, 384)]
    assert out.score.shape == (2,) and torch.isfinite(out.score).all()


# What each ablation file must change, checked on the built model.
ABLATION_EFFECTS = {
    "gcn_to_attention": lambda m: all(isinstance(layer.interaction, SelfAttention) for layer in m.layers),
    "no_gcn": lambda m: all(layer.interaction is None for layer in m.layers),
    "adjacency_fixed": lambda m: all(layer.interaction.adjacency_kind == "fixed" for layer in m.layers),
    "adjacency_learnable": lambda m: all(
        layer.interaction.edge_weights.shape == (6, 6) for layer in m.layers
    ),
    "no_stage3_memory": lambda m: m.memory is None and all(layer.cross_attention is None for layer in m.layers),
    "moe_to_ffn": lambda m: m.moe.moe.router is None and len(m.moe.moe.experts) == 1,
    "no_moe": lambda m: m.moe is None and all(layer.moe is None for layer in m.layers),
    "moe_every_layer": lambda m: m.moe is None and all(layer.moe is not None for layer in m.layers),
    "moe_at_end": lambda m: m.moe is not None and all(layer.moe is None for layer in m.layers),
    "experts_2": lambda m: len(m.moe.moe.experts) == 2,
    "experts_4": lambda m: len(m.moe.moe.experts) == 4,
    "experts_8": lambda m: len(m.moe.moe.experts) == 8,
}
DEFAULT_EQUIVALENT = {"adjacency_fixed", "moe_at_end", "experts_4"}


def test_every_ablation_file_is_checked():
    assert {p.stem for p in ABLATIONS} == set(ABLATION_EFFECTS)


@pytest.mark.parametrize("path", ABLATIONS, ids=lambda p: p.stem)
def test_ablation_builds_runs_and_changes_what_it_should(path):
    torch.manual_seed(0)
    backbone = tiny_backbone()
    small = {"embed_dim": 48}
    reference = LifeIQA(backbone, **{**net_args(), **small})
    model = LifeIQA(backbone, **{**net_args(path), **small}).eval()
    assert ABLATION_EFFECTS[path.stem](model)
    same_count = count(model.decoder_parameters()) == count(reference.decoder_parameters())
    assert same_count == (path.stem in DEFAULT_EQUIVALENT)
    with torch.no_grad():
        out = model(torch.rand(2, 3, 64, 64))
    assert out.score.shape == (2,) and torch.isfinite(out.score).all()
    assert set(out.aux_losses) == {"load_balance", "z_loss"}


def test_ablation_and_baseline_configs_compose_through_the_train_config():
    # The other ablation files differ only in the keys checked above; one shows the group wiring works.
    ablation = CONF / "ablation" / "lifeiqa" / "no_gcn.yaml"
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=["model=lifeiqa", f"ablation=lifeiqa/{ablation.stem}"])
        baseline = compose("train", overrides=["model=transformer_decoder"])
    args = OmegaConf.to_container(cfg.model.net)
    assert {k: args[k] for k in net_args(ablation)} == net_args(ablation)
    assert args["interaction"] == "none"
    assert set(cfg.model.losses) == {"score", "load_balance", "z_loss"}
    assert baseline.model.net._target_ == "biqa.models.transformer_decoder.TransformerDecoderBaseline"


def test_variants_without_a_router_report_zero_router_losses():
    backbone = tiny_backbone()
    for overrides in ({"moe_placement": "none"}, {"num_experts": 1}):
        out = LifeIQA(backbone, embed_dim=48, **overrides)(torch.rand(2, 3, 64, 64))
        assert out.aux_losses["load_balance"].item() == 0.0 and out.aux_losses["z_loss"].item() == 0.0


def test_every_layer_moe_averages_router_losses():
    torch.manual_seed(0)
    model = LifeIQA(tiny_backbone(), embed_dim=48, depth=3, moe_placement="every_layer")
    captured = []
    for layer in model.layers:
        layer.moe.moe.register_forward_hook(lambda m, args, out: captured.append(out[1]))
    out = model(torch.rand(2, 3, 64, 64))
    assert len(captured) == 3
    for name in ("load_balance", "z_loss"):
        expected = torch.stack([c[name] for c in captured]).mean()
        torch.testing.assert_close(out.aux_losses[name], expected)


def test_cached_backbone_features_give_the_same_scores():
    torch.manual_seed(0)
    model = LifeIQA(tiny_backbone(), embed_dim=48).eval()
    images = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        from_images = model(images)
        from_features = model(None, features=model.backbone(images))
    assert model.supports_cached_features
    torch.testing.assert_close(from_features.score, from_images.score)


def test_invalid_switches_are_rejected():
    backbone = tiny_backbone()
    with pytest.raises(ValueError):
        LifeIQA(backbone, interaction="gat")
    with pytest.raises(ValueError):
        LifeIQA(backbone, moe_placement="start")
