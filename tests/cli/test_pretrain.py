"""The distortion-encoder stage end to end: compose conf/pretrain_distortion.yaml, train, save, load into BFRD."""

import numpy as np
import pytest
import torch
from PIL import Image

from biqa.lit.contrastive import pretrain_distortion_encoder
from biqa.models.backbones import Backbone
from biqa.models.bfrd import BFRD

pytestmark = pytest.mark.slow


def test_pretrain_saves_an_encoder_that_bfrd_loads_frozen(compose_config, tmp_path):
    references = tmp_path / "references"
    references.mkdir()
    rng = np.random.default_rng(0)
    for index in range(3):
        Image.fromarray(rng.integers(0, 256, (48, 56, 3), dtype=np.uint8)).save(references / f"{index}.png")
    checkpoint = tmp_path / "encoder.pt"
    cfg = compose_config(
        "pretrain_distortion",
        [
            f"data.references={references}",
            "data.dead_leaves=1",
            "data.dead_leaves_size=40",
            "data.val_references=1",
            "data.crop_size=32",
            "data.train_samples=16",
            "data.val_samples=8",
            "data.batch_size=8",
            "data.num_workers=0",
            "data.distortions=[gaussian_blur,jpeg]",
            "encoder.channels=[8,16]",
            "encoder.projection_dim=8",
            "trainer.max_epochs=1",
            "++trainer.enable_progress_bar=false",
            "++trainer.enable_model_summary=false",
            f"checkpoint_path={checkpoint}",
            "threads=1",
        ],
    )
    threads_before = torch.get_num_threads()
    try:
        assert pretrain_distortion_encoder(cfg) == checkpoint and checkpoint.is_file()
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads_before)
    provenance = torch.load(checkpoint, weights_only=True)["pretraining"]
    assert (
        provenance["config"]["data"]["crop_size"] == 32
        and provenance["config"]["module"]["temperature"] == 0.1
    )
    assert np.isfinite(provenance["metrics"]["val/loss"])
    model = BFRD(
        Backbone("test_efficientnet", out_indices=(1, 2, 3, 4)),
        width=16,
        num_heads=2,
        window_size=2,
        distortion_grid=2,
        distortion_checkpoint=str(checkpoint),
    )
    encoder = model.distortion_tokens.encoder
    assert encoder.hyperparameters == {"channels": [8, 16], "projection_dim": 8}
    assert not encoder.training and not any(p.requires_grad for p in encoder.parameters())
    assert torch.isfinite(model(torch.rand(2, 3, 64, 64)).score).all()
