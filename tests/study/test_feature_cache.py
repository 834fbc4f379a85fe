"""The frozen-backbone feature cache: the stored features are the backbone's on the same crops, built once
per dataset + weights + crop settings and shared; models that cannot use it are refused up front."""

import pytest
import torch
from hydra.utils import instantiate
from tests.study.conftest import STUDY_TINY

from biqa.data.feature_cache import CachedFeatureDataModule, use_feature_cache
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
