"""Impossible configurations stop before training, with a message that says what to change."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf
from PIL import Image
from tests.reliability.conftest import RUN

from biqa.checks import ConfigError, check_config
from biqa.config import CONFIG_DIR
from biqa.engine import train

ABLATIONS = sorted(Path(CONFIG_DIR, "ablation").glob("*/*.yaml"))
MODELS = sorted(p.stem for p in Path(CONFIG_DIR, "model").glob("*.yaml"))
# Small decoders on the tiny backbone, so that building them costs nothing.
SMALL_DGIQA = ["model=dgiqa", "model.net.bridge_channels=[8,8,16,16]", "model.net.num_heads=2",
               "model.net.stack_channels=16", "model.net.grid=3"]
SMALL_MFENET = ["model=mfenet", "model.net.high_frequency_width=16",
                "model.net.distortion_channels=[8,8,16,16,32]", "model.net.head_hidden=16"]


def failure(compose_config, overrides: list[str], base: list[str] = RUN) -> str:
    """The message train() stops with; it must stop before a trainer exists (no checkpoint folder)."""
    cfg = compose_config("train", [*base, *overrides])
    with pytest.raises(ConfigError) as caught:
        train(cfg)
    assert not (Path(cfg.paths.output_dir) / "checkpoints").exists()
    return str(caught.value)


@pytest.mark.parametrize("path", ABLATIONS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_every_ablation_selects_its_own_model(compose_config, path):
    model = path.parent.name
    cfg = compose_config("train", [f"ablation={model}/{path.stem}"])
    assert cfg.hydra.runtime.choices.model == model
    check_config(cfg)


@pytest.mark.parametrize("model", MODELS)
def test_every_model_config_passes_the_checks(compose_config, model):
    check_config(compose_config("train", [f"model={model}"]))


def test_ablation_of_another_model_is_refused_with_the_fix(compose_config):
    message = failure(compose_config, ["model=pooled", "ablation=lifeiqa/no_gcn"])
    assert "ablation=lifeiqa/no_gcn is an ablation of model=lifeiqa, but the run's model is model=pooled" in message
    assert "drop model=pooled" in message


def test_lifeiqa_tapping_stages_the_backbone_does_not_give(compose_config):
    message = failure(compose_config, ["model=lifeiqa", "model.backbone.out_indices=[4]"])
    assert "LifeIQA taps model.net.stages=[-2, -1]" in message
    assert "model.backbone.out_indices=[4] gives only 1: give the backbone at least 2 out_indices" in message


@pytest.mark.parametrize(("overrides", "expected"), [
    (["model=transformer_decoder", "model/backbone=test_efficientnet", "model.net.stages=[0,4]"],
     "TransformerDecoderBaseline taps model.net.stages=[0, 4] of the backbone's outputs, but "
     "model.backbone.out_indices=[1, 2, 3, 4] gives only 4: give the backbone at least 5 out_indices"),
    (["model=dgiqa", "model/backbone=test_efficientnet", "model.backbone.out_indices=[3,4]"],
     "DGIQA bridges every backbone output (model.net.bridge_channels=[64, 128, 256, 512], one width per "
     "stage), but model.backbone.out_indices=[3, 4] gives 2: give the backbone 4 out_indices"),
])
def test_decoders_needing_more_backbone_stages(compose_config, overrides, expected):
    with pytest.raises(ConfigError, match="cannot work as configured") as caught:
        check_config(compose_config("train", overrides))
    assert expected in str(caught.value)


def test_bfrd_needs_a_pyramid_of_stages():
    bfrd = {"_target_": "biqa.models.bfrd.BFRD", "backbone": {"name": "test_resnet", "out_indices": [4]}}
    with pytest.raises(ConfigError) as caught:
        check_config(OmegaConf.create({"model": {"net": bfrd}}), choices={})
    assert ("BFRD fuses a pyramid of backbone stages (the paper: four), but model.backbone.out_indices=[4] "
            "gives 1: set model.backbone.out_indices=[0, 1, 2, 3]") in str(caught.value)
    bfrd["backbone"]["out_indices"] = [3, 4]
    check_config(OmegaConf.create({"model": {"net": bfrd}}), choices={})


def test_dgiqa_without_a_depth_provider(compose_config):
    message = failure(compose_config, SMALL_DGIQA)
    assert "DGIQA needs depth maps but no depth provider is configured: add data/depth=depth_anything" in message


def test_required_distortion_type_loss_on_a_dataset_without_type_labels(compose_config, tmp_path):
    root = tmp_path / "unlabelled"
    root.mkdir()
    rng = np.random.default_rng(0)
    for i in range(6):
        Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(root / f"{i}.png")
    (root / "scores.csv").write_text("file,mos\n" + "".join(f"{i}.png,{1 + i * 0.5}\n" for i in range(6)))
    data = ["data=custom_csv", f"data.dataset.root={root}", "data.dataset.csv_file=scores.csv",
            "data.dataset.path_column=file", "data.dataset.score_column=mos", "data.dataset.score_range=[1,5]"]
    not_synthetic = [o for o in RUN if not o.startswith("data.dataset.")]
    message = failure(compose_config, [*SMALL_MFENET, *data, "++model.losses.distortion_type.required=true"],
                      base=not_synthetic)
    assert ("model.losses.distortion_type is required (required: true) but dataset custom has no "
            "distortion-type labels") in message
    assert "set model.losses.distortion_type.required=false" in message


def test_distortion_classifier_smaller_than_the_dataset_label_set(compose_config):
    message = failure(compose_config, [*SMALL_MFENET, "model.net.num_distortion_types=2"])
    assert "dataset synthetic has 3 distortion types (labels up to 2) but the model classifies 2" in message
    assert "set model.net.num_distortion_types=3" in message


def test_every_problem_is_listed_at_once(compose_config):
    cfg = compose_config("train", ["model=lifeiqa", "model.backbone.out_indices=[4]"])
    with pytest.raises(ConfigError) as caught:
        check_config(cfg, choices={"model": "lifeiqa", "ablation": "dgiqa/no_refinement"})
    assert len(caught.value.problems) == 2


def test_a_recipe_refuses_a_model_its_keys_do_not_fit_and_names_the_fix(compose_config):
    cfg = compose_config("train", ["experiment=dgiqa_koniq", "model=lifeiqa"])
    with pytest.raises(ConfigError) as caught:
        check_config(cfg)
    message = str(caught.value)
    assert "experiment=dgiqa_koniq is a recipe for model=dgiqa" in message
    assert "drop model=lifeiqa" in message and "conf/experiment/lifeiqa_*.yaml" in message


def test_lifeiqa_recipe_serves_its_vanilla_decoder_baseline(compose_config):
    cfg = compose_config("train", ["experiment=lifeiqa_koniq", "model=transformer_decoder"])
    check_config(cfg)
    assert cfg.model.net._target_.endswith("TransformerDecoderBaseline")
    assert cfg.hydra.runtime.choices["model/backbone"] == "swin_base"
