from functools import cache
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from torch import nn

from biqa.models.backbones import Backbone
from biqa.models.base import QualityModel
from biqa.models.blocks.bridges import TransformerCnnBridge
from biqa.models.dgiqa import DGIQA

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"
TINY = dict(bridge_channels=(8, 8, 16, 16), grid=3, num_heads=2, stack_channels=16)


def tiny_backbone(name: str = "test_resnet") -> Backbone:
    return Backbone(name, weights="none", out_indices=(1, 2, 3, 4))


def tiny_dgiqa(depth: str | None = "test_resnet", **overrides) -> DGIQA:
    torch.manual_seed(0)
    settings = {**TINY, **overrides}
    if depth is None:
        settings.setdefault("depth_guidance", "none")
    return DGIQA(tiny_backbone(), tiny_backbone(depth) if depth else None, **settings)


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def images_and_depth(n: int = 2, size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return torch.rand(n, 3, size, size, generator=generator), torch.rand(n, 1, size, size, generator=generator)


def test_score_shape_and_unit_interval():
    model = tiny_dgiqa().eval()
    images, depth = images_and_depth(3)
    score = model(images, depth).score
    assert score.shape == (3,)
    assert bool(((score > 0) & (score < 1)).all())
    assert model.uses_depth and not QualityModel.uses_depth


def test_depth_changes_the_score_and_is_required():
    model = tiny_dgiqa().eval()
    images, depth = images_and_depth()
    assert not torch.allclose(model(images, depth).score, model(images, 1 - depth).score)
    with pytest.raises(ValueError, match="needs `depth`"):
        model(images)


def test_gradients_reach_every_trainable_parameter():
    model = tiny_dgiqa(bridge_dropout=0.0, attention_dropout=0.0).train()
    images, depth = images_and_depth()
    model(images, depth).score.sum().backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None, name
        assert torch.isfinite(parameter.grad).all(), name
    # Nonzero in the decoder (timm zero-initialises some backbone branches, whose weights then get exact
    # zeros on the first step), except a conv bias right before a training-mode BatchNorm: the batch mean
    # cancels it, so its gradient is zero up to rounding although it is connected.
    before_batch_norm = {f"{bridges}.{i}.local_mix.0.bias" for bridges in ("rgb_bridges", "depth_bridges")
                         for i in range(4)} | {"dilated_stack.0.bias", "dilated_stack.3.bias"}
    backbone_ids = model.backbone_parameter_ids()
    decoder = [(n, p) for n, p in model.named_parameters() if id(p) not in backbone_ids]
    assert {n.split(".")[0] for n, _ in decoder} == {
        "rgb_bridges", "depth_bridges", "depth_car", "refinement", "dilated_stack", "head"}
    for name, parameter in decoder:
        if name not in before_batch_norm:
            assert parameter.grad.abs().sum() > 0, name


def test_no_depth_branch_is_rgb_self_attention():
    full, rgb_only = tiny_dgiqa(), tiny_dgiqa(depth=None)
    assert not rgb_only.uses_depth and rgb_only.depth_backbone is None and rgb_only.depth_bridges is None
    assert n_params(rgb_only) == n_params(full) - n_params(full.depth_backbone) - n_params(full.depth_bridges)
    images, _ = images_and_depth()
    assert rgb_only.eval()(images).score.shape == (2,)


@pytest.mark.parametrize("guidance, depth_backbone", [("none", "test_resnet"), ("depth_queries", None)])
def test_depth_guidance_must_match_the_depth_backbone(guidance, depth_backbone):
    with pytest.raises(ValueError, match="depth_guidance"):
        DGIQA(tiny_backbone(), tiny_backbone(depth_backbone) if depth_backbone else None,
              depth_guidance=guidance, **TINY)


@pytest.mark.parametrize("guidance", ["depth_queries", "rgb_queries"])
def test_query_roles(guidance):
    model = tiny_dgiqa(depth_guidance=guidance).eval()
    images, depth = images_and_depth()
    seen = {}
    model.depth_car.register_forward_pre_hook(lambda module, args: seen.update(queries=args[0], context=args[1]))
    with torch.no_grad():
        model(images, depth)
        rgb = model.fused_stages(model.backbone, model.rgb_bridges, images).flatten(2).transpose(1, 2)
        depth_tokens = model.fused_stages(model.depth_backbone, model.depth_bridges, depth.expand(-1, 3, -1, -1))
        depth_tokens = depth_tokens.flatten(2).transpose(1, 2)
    queries, context = (depth_tokens, rgb) if guidance == "depth_queries" else (rgb, depth_tokens)
    torch.testing.assert_close(seen["queries"], queries)
    torch.testing.assert_close(seen["context"], context)
    assert queries.shape == (2, 9, 48)


def test_conv1x1_bridges_replace_the_tcbs():
    full, plain = tiny_dgiqa(), tiny_dgiqa(bridge="conv1x1")
    for bridge, channels in zip(plain.rgb_bridges, full.backbone.channels, strict=True):
        assert isinstance(bridge, nn.Conv2d) and bridge.kernel_size == (1, 1) and bridge.in_channels == channels
    assert not any(isinstance(m, TransformerCnnBridge) for m in plain.modules())
    assert n_params(plain) < n_params(full)
    images, depth = images_and_depth()
    assert plain.eval()(images, depth).score.shape == (2,)


def test_no_refinement():
    full, ablated = tiny_dgiqa(), tiny_dgiqa(refinement=False)
    assert isinstance(ablated.refinement, nn.Identity)
    assert n_params(full) - n_params(ablated) == n_params(full.refinement)


def test_no_dilation_and_no_dilated_stack():
    full = tiny_dgiqa()
    undilated = tiny_dgiqa(dilations=(1, 1))
    no_stack = tiny_dgiqa(dilated_stack=False)
    dilation = lambda m: [c.dilation for c in m.dilated_stack if isinstance(c, nn.Conv2d)]  # noqa: E731
    assert dilation(full) == [(2, 2), (4, 4)]
    assert dilation(undilated) == [(1, 1), (1, 1)]
    assert n_params(undilated) == n_params(full)
    assert isinstance(no_stack.dilated_stack, nn.Identity) and no_stack.head.in_features == sum(TINY["bridge_channels"])
    images, depth = images_and_depth()
    for model in (undilated, no_stack):
        assert model.eval()(images, depth).score.shape == (2,)


def test_a_different_depth_encoder():
    model = tiny_dgiqa(depth="test_efficientnet").eval()
    assert model.depth_backbone.channels != model.backbone.channels
    assert [b.project.in_channels for b in model.depth_bridges] == model.depth_backbone.channels
    images, depth = images_and_depth()
    assert model(images, depth).score.shape == (2,)


def test_grid_none_follows_the_last_stage():
    model = tiny_dgiqa(grid=None).eval()
    seen = {}
    model.dilated_stack.register_forward_pre_hook(lambda module, args: seen.update(shape=args[0].shape))
    model(*images_and_depth(size=64))
    assert seen["shape"][-2:] == (2, 2)  # test_resnet's last stage at 64 px: stride 32


def compose_dgiqa(*overrides: str):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="train", overrides=["model=dgiqa", *overrides])


@cache
def default_config():
    return compose_dgiqa()


ABLATIONS = {
    "no_depth_branch": {"depth_guidance": "none", "depth_backbone": None},
    "swapped_query_roles": {"depth_guidance": "rgb_queries"},
    "conv1x1_bridges": {"bridge": "conv1x1"},
    "no_refinement": {"refinement": False},
    "no_dilation": {"dilations": [1, 1]},
    "no_dilated_stack": {"dilated_stack": False},
    "depth_encoder_swin_base": {},
    "depth_encoder_swin_small": {},
}


def test_every_ablation_config_is_tested():
    assert {p.stem for p in (CONF_DIR / "ablation" / "dgiqa").glob("*.yaml")} == set(ABLATIONS)


@pytest.mark.parametrize("name", sorted(ABLATIONS))
def test_ablation_config_sets_its_switch_and_builds(name):
    default, cfg = default_config(), compose_dgiqa(f"ablation=dgiqa/{name}")
    expected = ABLATIONS[name]
    changed = {k for k in cfg.model.net if k not in ("backbone", "depth_backbone")
               and cfg.model.net[k] != default.model.net[k]}
    assert changed == set(expected) - {"depth_backbone"}
    assert all(cfg.model.net[k] == v for k, v in expected.items())
    if name.startswith("depth_encoder_"):
        size = name.removeprefix("depth_encoder_")
        assert cfg.model.net.depth_backbone.name.startswith(f"{size}_patch4_window7_224")
        assert cfg.model.net.backbone.name == default.model.net.backbone.name == "swin_tiny_patch4_window7_224"
    depth = {} if name == "no_depth_branch" else {"depth_backbone": tiny_backbone("test_efficientnet")}
    net = instantiate(cfg.model.net, backbone=tiny_backbone(), **depth, **TINY).eval()
    images, depth_map = images_and_depth()
    assert net.uses_depth == (name != "no_depth_branch")
    assert net(images, depth_map if net.uses_depth else None).score.shape == (2,)


def test_default_config_is_the_paper_setting_with_its_parameter_count():
    cfg = compose_dgiqa("model.backbone.weights=none")
    assert cfg.model.net.backbone.name == cfg.model.net.depth_backbone.name == "swin_tiny_patch4_window7_224"
    with torch.device("meta"):
        net = instantiate(cfg.model.net)
    assert {name: n_params(child) for name, child in net.named_children()} == {
        "backbone": 27_517_818,
        "rgb_bridges": 3_704_060,
        "depth_backbone": 27_517_818,
        "depth_bridges": 3_704_060,
        "depth_car": 11_071_680,
        "refinement": 11_071_680,
        "dilated_stack": 18_290_688,
        "head": 1_025,
    }
    assert n_params(net) == 102_878_829
    assert [b.project.out_channels for b in net.rgb_bridges] == [64, 128, 256, 512]
    # Two interpolations of one backbone config, two separate modules.
    assert net.backbone is not net.depth_backbone and len(net.backbone_modules()) == 2
    assert not {id(p) for p in net.backbone.parameters()} & {id(p) for p in net.depth_backbone.parameters()}
