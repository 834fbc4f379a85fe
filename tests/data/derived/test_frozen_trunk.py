"""`+feature_cache=frozen_trunk`: the stored trunk (stages 0..until_stage) under trained top stages gives the
run without the store, shares the store of a backbone cut at the same stage, and refuses what cannot work."""

import csv
import json

import pytest
import torch
from hydra.utils import instantiate
from tests.conftest import TINY, compose_in

from biqa.data.derived.feature_cache import use_feature_cache
from biqa.engine import evaluate, train

# One view per image and one crop per visit, so that both data paths see exactly the same crops.
TRUNK = [*TINY, "+feature_cache=frozen_trunk", "feature_cache.views=2", "data.train_crops.count=1",
         "data.eval_crops.count=2", "trainer.log_every_n_steps=1", "logger=csv"]


def test_batches_carry_the_trunks_last_stage_and_the_tapped_stages_below_it(compose_config, tmp_path):
    cfg = compose_config("train", [*TRUNK, "model=lifeiqa", "model.net.embed_dim=32", "model.net.num_heads=2",
                                   "feature_cache.until_stage=2", f"feature_cache.dir={tmp_path / 'features'}"])
    torch.manual_seed(0)
    net = instantiate(cfg.model.net)
    assert cfg.model.backbone.freeze == 3  # frozen through the trunk: stage_count(until_stage)
    cached = use_feature_cache(instantiate(cfg.data), net, cfg.feature_cache)
    cached.prepare_data()
    cached.setup("fit")
    batch = next(iter(cached.train_dataloader()))
    assert "features" not in batch and "images" not in batch
    assert sorted(batch["trunk"]) == [1, 2]  # the backbone gives stages 1-4; 3 and 4 are trained
    folder, _ = cached.store_folder()
    assert sorted(p.name for p in folder.glob("stage*.npy")) == ["stage0.npy", "stage1.npy", "stage2.npy"]

    cut = compose_config("train", [*TINY, "+feature_cache=frozen_backbone", "feature_cache.views=2",
                                   "data.train_crops.count=1", "model.backbone.out_indices=[1,2]",
                                   f"feature_cache.dir={tmp_path / 'features'}"])
    torch.manual_seed(0)
    frozen = use_feature_cache(instantiate(cut.data), instantiate(cut.model.net), cut.feature_cache)
    assert frozen.store_folder()[0] == folder  # the same trunk weights: one store


@pytest.mark.parametrize("overrides, message", [
    (["model.backbone.freeze=2"], "set model.backbone.freeze=4"),
    (["feature_cache.until_stage=4"], "for a wholly frozen backbone use"),
    (["model=dgiqa", "data/depth=not_learned_blur_proxy"], "cannot take cached features"),
])
def test_impossible_combinations_are_refused_with_the_fix(compose_config, tmp_path, overrides, message):
    cfg = compose_config("train", [*TRUNK, *overrides, f"feature_cache.dir={tmp_path / 'features'}"])
    with pytest.raises(ValueError, match=message):
        use_feature_cache(instantiate(cfg.data), instantiate(cfg.model.net), cfg.feature_cache)


def training_losses(run) -> list[float]:
    rows = csv.DictReader((run / "csv" / "metrics.csv").open())
    return [float(row["train/loss_step"]) for row in rows if row.get("train/loss_step")]


@pytest.mark.slow
@pytest.mark.parametrize("model", ["pooled", "mfenet"])
def test_training_over_the_stored_trunk_is_training_over_the_whole_backbone(compose_config, shared_cache, tmp_path,
                                                                            model):
    """The same losses, step for step, as the run that computes the frozen stages every step (float32 store);
    the trained stage moves. MFENet also reads the crops, for its pixel branches. (One epoch: the two paths
    differ by float rounding, which Adam's normalised steps amplify over many steps on a random backbone; the
    store is built in batches of the training's 4 crops, so that the convolutions round alike.)"""
    losses, tails = {}, {}
    for mode in ("images", "features"):
        cfg = compose_in(tmp_path / mode, shared_cache, "train", [
            *TRUNK, f"model={model}", "feature_cache.dtype=float32", f"feature_cache.mode={mode}", "feature_cache.batch_size=4",
            "trainer.max_epochs=1", f"feature_cache.dir={tmp_path / 'features'}"])
        train(cfg)
        losses[mode] = training_losses(tmp_path / mode / "run")
        checkpoint = torch.load(tmp_path / mode / "run" / "checkpoints" / "last.ckpt", weights_only=False)
        tails[mode] = checkpoint["state_dict"]["net.backbone.model.blocks.4.0.conv_pw.weight"]
    assert len(losses["features"]) == len(losses["images"]) >= 5
    assert losses["features"] == pytest.approx(losses["images"], rel=1e-4, abs=1e-5)
    torch.manual_seed(0)
    untrained = instantiate(compose_config("train", [*TRUNK, f"model={model}"]).model.net)
    assert not torch.allclose(tails["features"], untrained.backbone.model.blocks[4][0].conv_pw.weight)


@pytest.mark.slow
def test_biqa_eval_reproduces_the_runs_test_metrics_from_the_photos(shared_cache, tmp_path):
    """The checkpoint holds the whole backbone, trained stage included: evaluated on the photos, without the
    store, it gives the run's test metrics."""
    cfg = compose_in(tmp_path / "train", shared_cache, "train", [
        *TRUNK, "feature_cache.dtype=float32", "feature_cache.batch_size=4", f"feature_cache.dir={tmp_path / 'features'}"])
    metrics = train(cfg)
    checkpoint = json.loads((tmp_path / "train" / "run" / "result.json").read_text())["checkpoint"]
    again = evaluate(compose_in(tmp_path / "eval", shared_cache, "eval", [f"ckpt_path={checkpoint}"]))
    for name in ("srcc", "plcc", "rmse"):
        assert again[f"test/{name}"] == pytest.approx(metrics[f"test/{name}"], abs=1e-4)
