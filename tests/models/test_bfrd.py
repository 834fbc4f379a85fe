import warnings
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch import nn

from biqa.models.backbones import Backbone
from biqa.models.base import QualityOutput
from biqa.models.bfrd import (
    BFRD,
    ConcatFusion,
    CrossAttentionFusion,
    DistortionTokens,
    ParallelExpertsCrossAttention,
)
from biqa.models.distortion_encoder import DistortionEncoder

CONF = Path(__file__).resolve().parents[2] / "conf"
ABLATIONS = sorted((CONF / "ablation" / "bfrd").glob("*.yaml"))
# Small enough for a CPU test, large enough that every block has work: 64 px crops give a 4x4 token grid
# (stride 16), i.e. four 2x2 windows and a shift of 1.
TINY = {"width": 32, "num_heads": 4, "window_size": 2, "distortion_grid": 2, "head_hidden_dim": 16}


def tiny_backbone() -> Backbone:
    return Backbone("test_efficientnet", weights="none", out_indices=(1, 2, 3, 4))


def tiny_imagenet_encoder() -> Backbone:
    return Backbone("test_resnet", weights="none", out_indices=(4,))


def build(**overrides) -> BFRD:
    args = {**TINY, "allow_untrained_encoder": True, **overrides}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return BFRD(tiny_backbone(), **args)


def net_config(*ablations: Path):
    """conf/model/bfrd.yaml's net with ablation files merged on top, made tiny."""
    net = OmegaConf.load(CONF / "model" / "bfrd.yaml").net
    for path in ablations:
        net = OmegaConf.merge(net, OmegaConf.load(path).model.net)
    net = OmegaConf.merge(net, TINY)
    net.backbone = {
        "_target_": "biqa.models.backbones.Backbone",
        "name": "test_efficientnet",
        "out_indices": [1, 2, 3, 4],
    }
    net.distortion_checkpoint = None
    net.allow_untrained_encoder = True
    if net.imagenet_encoder is not None:
        net.imagenet_encoder.name, net.imagenet_encoder.weights = "test_resnet", "none"
    return net


def images(n: int = 3) -> torch.Tensor:
    torch.manual_seed(1)
    return torch.rand(n, 3, 64, 64)


def test_output_shape_range_and_aux_losses():
    torch.manual_seed(0)
    model = build().eval()
    with torch.no_grad():
        out = model(images())
    assert isinstance(out, QualityOutput)
    assert out.score.shape == (3,)
    assert ((out.score > 0) & (out.score < 1)).all()
    assert set(out.aux_losses) == {"load_balance", "z_loss"}
    assert 2.0 - 1e-5 <= out.aux_losses["load_balance"].item() <= 4.0 + 1e-5  # top-2 of 4: in [k, E]
    assert out.aux_losses["z_loss"].item() > 0


def test_linear_score_is_the_sigmoid_score_before_the_sigmoid():
    torch.manual_seed(0)
    sigmoid = build().eval()
    linear = build(score_activation="linear").eval()
    linear.load_state_dict(sigmoid.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(linear(images()).score.sigmoid(), sigmoid(images()).score)


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"moe_style": "parallel_experts", "num_experts": 2, "top_k": 2},
        {"fusion_mode": "concat"},
        # Learned queries are alike across images, so a top-2-of-4 router may leave an expert unused.
        {"distortion_encoder": "none", "top_down_only": True, "num_experts": 2},
        {"distortion_encoder": "imagenet", "fusion_mode": "cross_attention"},
    ],
    ids=["default", "parallel_experts", "concat", "none_top_down", "imagenet_cross_attention"],
)
def test_gradients_reach_every_trainable_parameter_and_never_the_frozen_encoder(overrides):
    torch.manual_seed(0)
    if overrides.get("distortion_encoder") == "imagenet":
        overrides = {**overrides, "imagenet_encoder": tiny_imagenet_encoder()}
    model = build(**overrides).train()
    encoder = model.distortion_tokens.encoder
    frozen = {id(p) for p in encoder.parameters()} if encoder is not None else set()
    out = model(images(4))
    (out.score.sum() + sum(out.aux_losses.values(), torch.zeros(()))).backward()
    for name, param in model.named_parameters():
        if id(param) in frozen:
            assert not param.requires_grad and param.grad is None, name
        else:
            assert param.requires_grad, f"{name} is frozen but should train"
            assert param.grad is not None and param.grad.abs().sum() > 0, f"{name} gets no gradient"


def test_frozen_encoder_stays_in_eval_and_unchanged_while_the_model_trains():
    torch.manual_seed(0)
    model = build()
    encoder = model.distortion_tokens.encoder
    before = {k: v.clone() for k, v in encoder.state_dict().items()}
    model.train()
    assert model.training and model.fusion.training and not encoder.training
    assert not any(m.training for m in encoder.modules())
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    for _ in range(2):
        optimizer.zero_grad()
        model(images()).score.sum().backward()
        optimizer.step()
    after = encoder.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # weights and BN running statistics
    model.eval()
    model.train()
    assert not encoder.training


def _ablation_check(name: str):
    """What each ablation file must change in the built model (default-named files: nothing)."""
    fusion_of = lambda m: m.token_fusion  # noqa: E731
    checks = {
        "pathway_bidirectional": lambda m: m.fusion.bottom_up is not None,
        "pathway_top_down_only": lambda m: m.fusion.bottom_up is None,
        "no_window_attention": lambda m: len(m.window_blocks) == 0,
        "no_overlapping_block": lambda m: isinstance(m.overlapping_block, nn.Identity),
        "encoder_contrastive": lambda m: isinstance(m.distortion_tokens.encoder, DistortionEncoder),
        "encoder_imagenet": lambda m: isinstance(m.distortion_tokens.encoder, Backbone),
        "encoder_none": lambda m: m.distortion_tokens.encoder is None,
        "fusion_moe": lambda m: (
            isinstance(fusion_of(m), CrossAttentionFusion) and m.token_fusion.ffn.router is not None
        ),
        "fusion_cross_attention": lambda m: (
            isinstance(fusion_of(m), CrossAttentionFusion) and m.token_fusion.ffn.router is None
        ),
        "fusion_parallel_experts": lambda m: isinstance(fusion_of(m), ParallelExpertsCrossAttention),
        "fusion_concat": lambda m: isinstance(fusion_of(m), ConcatFusion),
        "top_1": lambda m: m.token_fusion.ffn.router.top_k == 1,
        "top_2": lambda m: m.token_fusion.ffn.router.top_k == 2,
    }
    for experts in (2, 4, 8):
        checks[f"experts_{experts}"] = lambda m, e=experts: len(m.token_fusion.ffn.experts) == e
    for ratio, key_window in (("025", 2), ("050", 3), ("075", 3), ("100", 4)):  # window 2 in the tiny setting
        checks[f"overlap_{ratio}"] = lambda m, k=key_window: m.overlapping_block.key_window_size == k
    return checks[name]


# Files naming the default setting, for studies that need the reference variant by name.
DEFAULT_NAMED = {
    "pathway_bidirectional",
    "encoder_contrastive",
    "fusion_moe",
    "experts_4",
    "top_2",
    "overlap_050",
}


@pytest.mark.parametrize("path", ABLATIONS, ids=lambda p: p.stem)
def test_every_ablation_builds_runs_and_changes_what_it_should(path):
    changes_config = net_config(path) != net_config()
    assert changes_config != (path.stem in DEFAULT_NAMED), (
        f"{path.stem}: default-named iff it changes nothing"
    )
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = instantiate(net_config(path)).eval()
    assert _ablation_check(path.stem)(model), f"{path.stem} did not change the model as it should"
    with torch.no_grad():
        out = model(images(2))
    assert out.score.shape == (2,) and torch.isfinite(out.score).all()


def test_contrastive_encoder_needs_a_checkpoint_unless_explicitly_allowed():
    with pytest.raises(ValueError, match="biqa-pretrain-distortion"):
        BFRD(tiny_backbone(), **TINY)
    with pytest.warns(UserWarning, match="UNTRAINED"):
        BFRD(tiny_backbone(), **TINY, allow_untrained_encoder=True)
    with pytest.raises(FileNotFoundError, match="biqa-pretrain-distortion"):
        BFRD(tiny_backbone(), **TINY, distortion_checkpoint="/nonexistent/encoder.pt")
    with pytest.raises(ValueError, match="imagenet_encoder"):
        BFRD(tiny_backbone(), **TINY, distortion_encoder="imagenet")


@pytest.mark.parametrize(
    ("argument", "value"),
    [
        ("distortion_encoder", "clip"),
        ("fusion_mode", "sum"),
        ("moe_style", "dense"),
        ("score_activation", "tanh"),
        ("grid_reduction", 64),
    ],
)
def test_unknown_choices_are_refused(argument, value):
    with pytest.raises(ValueError, match=argument):
        build(**{argument: value})


def test_trained_encoder_is_loaded_from_its_checkpoint(tmp_path):
    torch.manual_seed(0)
    encoder = DistortionEncoder(channels=(8, 16), projection_dim=4)
    encoder.features[0].bias.data.fill_(0.5)  # not what a fresh encoder starts from
    encoder.save(tmp_path / "encoder.pt")
    tokens = DistortionTokens("contrastive", dim=8, grid=2, checkpoint=str(tmp_path / "encoder.pt"))
    loaded = tokens.encoder
    assert loaded.hyperparameters == {"channels": [8, 16], "projection_dim": 4}
    assert all(
        torch.equal(a, b)
        for a, b in zip(encoder.state_dict().values(), loaded.state_dict().values(), strict=True)
    )
    assert not loaded.training and not any(p.requires_grad for p in loaded.parameters())


def test_distortion_tokens_read_the_image_except_without_an_encoder():
    torch.manual_seed(0)
    x = images(2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        contrastive = DistortionTokens("contrastive", dim=8, grid=2, allow_untrained_encoder=True)
    tokens = contrastive(x)
    assert tokens.shape == (2, 4, 8) and not torch.allclose(tokens[0], tokens[1])
    learned = DistortionTokens("none", dim=8, grid=2)
    assert torch.equal(learned(x)[0], learned(x)[1])


@pytest.mark.parametrize(
    ("backbone", "total", "frozen_encoder", "trainable_decoder"),
    [
        ("swin_tiny", 37_793_423, 1_261_696, 9_013_909),
        ("efficientnet_lite0_offline", 12_992_789, 1_261_696, 8_772_245),
    ],
)
def test_parameter_count_at_the_default_widths(backbone, total, frozen_encoder, trainable_decoder):
    cfg = OmegaConf.load(CONF / "model" / "backbone" / f"{backbone}.yaml")
    cfg.weights = "none"
    with torch.device("meta"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = BFRD(instantiate(cfg), allow_untrained_encoder=True)
    count = lambda params: sum(p.numel() for p in params)  # noqa: E731
    trainable = count(p for p in model.parameters() if p.requires_grad)
    assert count(model.parameters()) == total
    assert count(model.distortion_tokens.encoder.parameters()) == frozen_encoder == total - trainable
    assert trainable - count(model.backbone.parameters()) == trainable_decoder
