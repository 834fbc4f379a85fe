from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from biqa.lit.losses import DistortionTypeLoss
from biqa.models.backbones import Backbone
from biqa.models.blocks.attentional_fusion import AdditiveFusion, AttentionalFusion, ConcatFusion
from biqa.models.blocks.highpass import FixedHighPass
from biqa.models.blocks.octave import OctaveConv
from biqa.models.mfenet import DistortionAwareNetwork, HighFrequencyNetwork, MFENet

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"
NUM_TYPES = 7
TINY = dict(high_frequency_width=16, distortion_channels=(8, 8, 16, 16, 32), head_hidden=16)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # tensors this small gain nothing from intra-op threads, which only fight the other test workers for the CPU
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_backbone(name: str = "test_convnext") -> Backbone:
    out_indices = (0, 1, 2, 3) if name == "test_convnext" else (1, 2, 3, 4)
    return Backbone(name, weights="none", out_indices=out_indices)


def tiny_mfenet(backbone: str = "test_convnext", **overrides) -> MFENet:
    torch.manual_seed(0)
    return MFENet(tiny_backbone(backbone), NUM_TYPES, **{**TINY, **overrides})


def count(module: torch.nn.Module, kind: type) -> int:
    return sum(isinstance(m, kind) for m in module.modules())


def n_params(module: torch.nn.Module | None) -> int:
    return sum(p.numel() for p in module.parameters()) if module is not None else 0


def test_score_in_unit_interval_and_distortion_logits():
    model = tiny_mfenet()
    out = model(torch.rand(3, 3, 64, 64))
    assert out.score.shape == (3,)
    assert bool(((out.score > 0) & (out.score < 1)).all())
    assert out.extras["distortion_logits"].shape == (3, NUM_TYPES)
    assert torch.isfinite(out.extras["distortion_logits"]).all()


@pytest.mark.parametrize("backbone", ["test_convnext", "test_resnet"])
@pytest.mark.parametrize("size", [(64, 64), (56, 72)])
def test_high_frequency_maps_match_each_stage(backbone, size):
    model = tiny_mfenet(backbone).eval()
    images = torch.rand(1, 3, *size)
    with torch.no_grad():
        stages = model.backbone(images)
        high = model.high_frequency(images)
    assert [h.shape[1] for h in high] == [s.shape[1] for s in stages]
    # strided convs and patchify stems may round odd sizes differently; the model resizes by at most one
    for h, s in zip(high, stages, strict=True):
        assert all(abs(a - b) <= 1 for a, b in zip(h.shape[-2:], s.shape[-2:], strict=True))


@pytest.mark.parametrize(
    "overrides",
    [{}, {"stage_aggregation": "pool_all"}, {"high_pass": "sobel", "fusion": "concat"}],
    ids=["default", "pool_all", "sobel_concat"],
)
def test_gradients_reach_every_trainable_parameter(overrides):
    model = tiny_mfenet(**overrides).train()
    out = model(torch.rand(4, 3, 48, 48))
    loss = F.l1_loss(out.score, torch.rand(4)) + F.cross_entropy(
        out.extras["distortion_logits"], torch.tensor([0, 1, 2, 3])
    )
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and (p.grad is None or not p.grad.any())]
    assert not missing


def test_without_high_frequency_network_removes_it_and_its_fusions_only():
    full = tiny_mfenet()
    ablated = tiny_mfenet(high_frequency=False)
    assert count(ablated, HighFrequencyNetwork) == 0 and count(ablated, OctaveConv) == 0
    assert count(ablated, AttentionalFusion) == 1  # the distortion fusion remains
    removed = n_params(full.high_frequency) + n_params(full.high_frequency_fusions)
    assert n_params(full) - n_params(ablated) == removed > 0
    out = ablated(torch.rand(2, 3, 32, 32))
    assert out.score.shape == (2,) and "distortion_logits" in out.extras


def test_without_distortion_aware_network_has_no_logits():
    full = tiny_mfenet()
    ablated = tiny_mfenet(distortion_aware=False)
    assert count(ablated, DistortionAwareNetwork) == 0
    assert count(ablated, AttentionalFusion) == len(ablated.backbone.channels)
    removed = n_params(full.distortion_aware) + n_params(full.distortion_projection) + n_params(full.distortion_fusion)
    assert n_params(full) - n_params(ablated) == removed > 0
    out = ablated(torch.rand(2, 3, 32, 32))
    assert out.extras == {}


@pytest.mark.parametrize("fusion, kind", [("aff", AttentionalFusion), ("add", AdditiveFusion), ("concat", ConcatFusion)])
def test_fusion_kind_is_used_at_every_fusion_point(fusion, kind):
    model = tiny_mfenet(fusion=fusion)
    assert count(model, kind) == len(model.backbone.channels) + 1
    others = {AttentionalFusion, AdditiveFusion, ConcatFusion} - {kind}
    assert all(count(model, other) == 0 for other in others)
    assert model(torch.rand(2, 3, 32, 32)).score.shape == (2,)


def high_frequency_of_constant(model: MFENet, value: float) -> list[torch.Tensor]:
    with torch.no_grad():
        return model.high_frequency(torch.full((1, 3, 32, 32), value))


@pytest.mark.parametrize("high_pass", ["laplacian", "sobel"])
def test_fixed_high_pass_replaces_octave_convs_and_ignores_flat_brightness(high_pass):
    model = tiny_mfenet(high_pass=high_pass).eval()
    assert count(model, OctaveConv) == 0 and count(model, FixedHighPass) == 1
    dark, bright = high_frequency_of_constant(model, 0.2), high_frequency_of_constant(model, 0.9)
    for a, b in zip(dark, bright, strict=True):  # equal up to float rounding in the filter
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


def test_octave_high_pass_is_learned_and_sees_flat_brightness():
    model = tiny_mfenet().eval()
    assert count(model, OctaveConv) == 3 and count(model, FixedHighPass) == 0
    dark, bright = high_frequency_of_constant(model, 0.2), high_frequency_of_constant(model, 0.9)
    assert not torch.allclose(dark[0], bright[0])


def test_stage_aggregation_switches_the_head_input():
    carry, pool_all = tiny_mfenet(), tiny_mfenet(stage_aggregation="pool_all")
    channels = carry.backbone.channels
    assert carry.head[1].in_features == channels[-1] and len(carry.carries) == len(channels) - 1
    assert pool_all.head[1].in_features == sum(channels) and pool_all.carries is None


def test_multi_task_loss_uses_labelled_crops_only():
    out = tiny_mfenet()(torch.rand(4, 3, 32, 32))
    term = DistortionTypeLoss(weight=0.3)
    labels = torch.tensor([2, -1, 5, -1])
    value = term(out, {"distortion_type": labels})
    expected = F.cross_entropy(out.extras["distortion_logits"][[0, 2]], labels[[0, 2]])
    torch.testing.assert_close(value, expected)
    assert term(out, {"distortion_type": torch.full((4,), -1)}) is None


ABLATIONS = {
    "no_high_frequency": {"high_frequency": False},
    "no_distortion_aware": {"distortion_aware": False},
    "fusion_add": {"fusion": "add"},
    "fusion_concat": {"fusion": "concat"},
    "fusion_aff": {"fusion": "aff"},
    "highpass_laplacian": {"high_pass": "laplacian"},
    "highpass_sobel": {"high_pass": "sobel"},
    "pool_all_stages": {"stage_aggregation": "pool_all"},
}


def compose_mfenet(*overrides: str):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="train", overrides=["model=mfenet", *overrides])


@pytest.fixture(scope="module")
def default_cfg():
    return compose_mfenet()


def test_every_ablation_config_is_tested():
    assert {p.stem for p in (CONF_DIR / "ablation" / "mfenet").glob("*.yaml")} == set(ABLATIONS)


@pytest.mark.parametrize("name", sorted(ABLATIONS))
def test_ablation_config_sets_its_switch_and_builds(name, default_cfg):
    default, cfg = default_cfg, compose_mfenet(f"ablation=mfenet/{name}")
    changed = {k for k in cfg.model.net if k != "backbone" and cfg.model.net[k] != default.model.net[k]}
    expected = {k for k, v in ABLATIONS[name].items() if default.model.net[k] != v}
    assert changed == expected
    assert all(cfg.model.net[k] == v for k, v in ABLATIONS[name].items())
    net = instantiate(cfg.model.net, backbone=tiny_backbone(), **TINY)
    out = net(torch.rand(2, 3, 32, 32))
    assert ("distortion_logits" in out.extras) == (name != "no_distortion_aware")
    loss_terms = {k for k, v in cfg.model.losses.items() if v is not None}
    assert loss_terms == ({"score"} if name == "no_distortion_aware" else {"score", "distortion_type"})


def test_default_config_has_the_multi_task_loss(default_cfg):
    cfg = default_cfg
    assert cfg.model.net.num_distortion_types == cfg.data.get("num_distortion_types", 14)
    assert cfg.model.losses.score.kind == "l1"
    assert cfg.model.losses.distortion_type._target_ == "biqa.lit.losses.DistortionTypeLoss"
    assert 0.1 <= cfg.model.losses.distortion_type.weight <= 0.5
