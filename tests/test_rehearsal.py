"""`debug=rehearsal` for every paper recipe (its ablation variants: tests/test_rehearsal_ablations.py).

The full-size rehearsal of each (a minute or more apiece on a CPU) is `benchmarks/rehearsal.py`. Here, the
cheap part of every one: each experiment composes, passes the checks and builds its data on a miniature of
its dataset in the real layout (reader, validation, split, image cache, depth, the recipe's batches); one
experiment per model trains 2 steps, validates and tests at a small crop on the tiny backbone and writes its
result record.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from hydra.utils import instantiate

from biqa.checks import check_config
from biqa.config import CONFIG_DIR
from biqa.engine import rehearsal_config, train

sys.path.insert(0, str(Path(CONFIG_DIR).parent / "benchmarks"))
from rehearsal import experiment_runs  # noqa: E402

# Each model made small (widths, heads) on the tiny backbone, so that one step costs little.
SMALL = {
    "lifeiqa": ["model.net.embed_dim=32", "model.net.num_heads=2"],
    "transformer_decoder": ["model.net.embed_dim=32", "model.net.num_heads=2", "model.net.ffn_hidden_dim=64"],
    "dgiqa": ["model.net.bridge_channels=[8,8,16,16]", "model.net.num_heads=2", "model.net.stack_channels=16",
              "model.net.grid=3"],
    "bfrd": ["model.net.width=32", "model.net.num_heads=4", "model.net.window_size=2",
             "model.net.distortion_grid=2", "model.net.head_hidden_dim=16"],
    "mfenet": ["model.net.high_frequency_width=16", "model.net.distortion_channels=[8,8,16,16,32]",
               "model.net.head_hidden=16"],
    "pooled": [],
    "ridge_probe": ["model.module.alphas=[1.0]", "model.module.gammas=[1.0]"],
}
TINY_RUN = ["model/backbone=test_resnet", "data.train_crops.size=64", "data.eval_crops.size=64",
            "++trainer.enable_progress_bar=false", "++trainer.enable_model_summary=false",
            "callbacks.progress_bar=null"]
EXPERIMENTS = experiment_runs()
# One experiment per model (and the two that need more on the command line) trains; every one builds its data.
TRAINED = {"lifeiqa_koniq", "dgiqa_kadid", "bfrd_live", "mfenet_tid2013", "biq2021_best", "cross_dataset"}


@pytest.mark.slow
@pytest.mark.parametrize(("name", "overrides"), EXPERIMENTS, ids=[name for name, _ in EXPERIMENTS])
def test_every_experiment_rehearses_its_data_on_a_miniature_dataset(compose_config, name, overrides):
    cfg = compose_config("train", [*overrides, "debug=rehearsal"])
    check_config(cfg, cfg.hydra.runtime.choices)
    cfg = rehearsal_config(cfg)
    assert Path(cfg.data.dataset.root).parent == Path(cfg.rehearsal.root)
    datamodule = instantiate(cfg.data)
    datamodule.prepare_data()
    datamodule.setup("fit")
    assert len(datamodule.split.test) >= 3 and len(datamodule.split.val) >= 1
    batch = next(iter(datamodule.train_dataloader()))
    expected = (cfg.data.batch_size, 1) if cfg.data.batch_composition == "independent_crops" else \
        (cfg.data.batch_size, cfg.data.train_crops.count)
    pixels = batch.get("boxes", batch.get("images"))
    assert tuple(pixels.shape[:2]) == expected
    if cfg.data.get("depth") is not None:  # DGIQA: RGB and depth travel together, 4 channels
        assert batch["pixels"].shape[1] == 4


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(TRAINED))
def test_one_experiment_per_model_trains_validates_tests_and_records(compose_config, name):
    overrides = dict(EXPERIMENTS)[name]
    model = compose_config("train", [*overrides, "debug=rehearsal"]).hydra.runtime.choices.model
    cfg = compose_config("train", [*overrides, "debug=rehearsal", *TINY_RUN, *SMALL[model]])
    metrics = train(cfg)
    record = json.loads((Path(cfg.paths.output_dir) / "result.json").read_text())
    assert Path(record["config"]["data"]["dataset"]["root"]).parent == Path(cfg.rehearsal.root)
    assert record["num_images"]["test"] >= 3
    assert {"val/srcc", "test/srcc", "test/plcc"} <= set(metrics)
