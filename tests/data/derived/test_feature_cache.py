"""The frozen-backbone feature cache: the stored features are the backbone's on the same crops, built once
per dataset + weights + crop settings and shared; models that cannot use it are refused up front."""

import pytest
import torch
from hydra.utils import instantiate
from tests.study.conftest import STUDY_TINY

from biqa.data.derived.feature_cache import CachedFeatureDataModule, use_feature_cache
from biqa.models.backbones import Backbone
from biqa.models.base import QualityModel
from biqa.models.baselines import PooledHead

CACHE = [*STUDY_TINY, "+feature_cache=frozen_backbone", "feature_cache.views=3", "data.train_crops.count=2"]


@pytest.fixture
def parts(compose_config, tmp_path):
    cfg = compose_config("train", CACHE + [f"feature_cache.dir={tmp_path / 'features'}"])
    torch.manual_seed(0)
    return cfg, instantiate(cfg.data), instantiate(cfg.model.net)


def test_stored_features_are_the_backbones_on_the_same_crops(parts):
    cfg, images, net = parts
    cached = use_feature_cache(images, net, cfg.feature_cache)
    cached.prepare_data()
    cached.setup("fit")
    batch = next(iter(cached.test_dataloader()))
    assert set(batch) >= {"features", "score", "index"} and "images" not in batch
    assert [f.shape[:2] for f in batch["features"]] == [(len(batch["index"]), 2)] * len(net.backbone.channels)

    views = cached.view_crops()
    crops = torch.stack([views[int(i)]["images"][:2] for i in batch["index"]])
    with torch.no_grad():
        expected = net.backbone.eval()(crops.flatten(0, 1).float() / 255)
    for stored, direct in zip(batch["features"], expected, strict=True):
        torch.testing.assert_close(stored.flatten(0, 1).float(), direct, atol=2e-2, rtol=1e-2)

    with torch.no_grad():
        from_cache = net(None, features=[f.flatten(0, 1).float() for f in batch["features"]]).score
        from_images = net(crops.flatten(0, 1).float() / 255).score
    torch.testing.assert_close(from_cache, from_images, atol=2e-2, rtol=1e-2)


def test_the_store_is_built_once_and_shared_by_the_same_weights_only(parts, compose_config, tmp_path):
    cfg, images, net = parts
    first = use_feature_cache(images, net, cfg.feature_cache)
    first.prepare_data()
    folder, _ = first.store_folder()
    built = (folder / "stage0.npy").stat().st_mtime_ns

    other_split = compose_config("train", CACHE + [f"feature_cache.dir={tmp_path / 'features'}", "seed=5"])
    again = use_feature_cache(instantiate(other_split.data), net, other_split.feature_cache)
    again.prepare_data()
    assert again.store_folder()[0] == folder and (folder / "stage0.npy").stat().st_mtime_ns == built

    torch.manual_seed(1)
    other_weights = instantiate(cfg.model.net)
    assert use_feature_cache(images, other_weights, cfg.feature_cache).store_folder()[0] != folder


def test_models_that_cannot_use_it_are_refused(parts):
    cfg, images, _ = parts
    trainable = PooledHead(Backbone("test_efficientnet", out_indices=(1, 2, 3, 4)))
    with pytest.raises(ValueError, match="freeze=all"):
        CachedFeatureDataModule(images, trainable, dir="unused")

    class ImageReader(QualityModel):
        def __init__(self):
            super().__init__()
            self.backbone = Backbone("test_efficientnet", freeze="all")

    with pytest.raises(ValueError, match="cannot take cached features"):
        CachedFeatureDataModule(images, ImageReader(), dir="unused")


def test_models_reading_other_stages_of_one_backbone_share_the_store(parts, compose_config, tmp_path):
    cfg, images, net = parts
    decoder = use_feature_cache(images, net, cfg.feature_cache)
    probe_cfg = compose_config("train", CACHE + [f"feature_cache.dir={tmp_path / 'features'}", "model=ridge_probe",
                                                 "model/backbone=test_efficientnet",
                                                 "model.backbone.out_indices=[0,1,2,3,4]", "model.backbone.freeze=all"])
    torch.manual_seed(0)
    probe_net = instantiate(probe_cfg.model.net)
    probe = use_feature_cache(instantiate(probe_cfg.data), probe_net, probe_cfg.feature_cache)
    assert probe.store_folder()[0] == decoder.store_folder()[0]
    for cached, stages in ((probe, 5), (decoder, len(net.backbone.channels))):
        cached.prepare_data()
        cached.setup("fit")
        batch = next(iter(cached.val_dataloader()))
        assert len(batch["features"]) == stages
    assert [f.shape[2] for f in batch["features"]] == net.backbone.channels


def test_models_with_pixel_branches_get_the_crops_with_the_features(compose_config, tmp_path):
    cfg = compose_config("train", CACHE + [f"feature_cache.dir={tmp_path / 'features'}", "model=mfenet",
                                           "model.backbone.freeze=all"])
    torch.manual_seed(0)
    net = instantiate(cfg.model.net).eval()
    cached = use_feature_cache(instantiate(cfg.data), net, cfg.feature_cache)
    cached.prepare_data()
    cached.setup("fit")
    batch = next(iter(cached.test_dataloader()))
    assert set(batch) >= {"features", "images"}
    crops = batch["images"].flatten(0, 1).float() / 255
    with torch.no_grad():
        from_cache = net(crops, features=[f.flatten(0, 1).float() for f in batch["features"]]).score
        from_images = net(crops).score
    torch.testing.assert_close(from_cache, from_images, atol=2e-2, rtol=1e-2)
