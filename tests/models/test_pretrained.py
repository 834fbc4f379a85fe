"""The shipped default model (biqa.models.pretrained): small, loads offline, scores real photos sensibly,
and is what biqa-predict uses without a checkpoint."""

from __future__ import annotations

import csv
import re

import numpy as np
import pytest
import torch
from PIL import Image, ImageFilter
from skimage import data as skimage_data

from biqa.lit.regression import net_from_checkpoint, read_checkpoint
from biqa.models.pretrained import default_checkpoint


def test_the_default_ships_head_only_fitted_on_every_photo():
    path = default_checkpoint()
    assert path.stat().st_size < 32 * 2**20   # the kernel heads' anchors: float16 statistics of 5,000 photos
    checkpoint = read_checkpoint(path)
    assert checkpoint["weights_from_config"] == ["backbone.", "extra_backbones."]
    assert not any(".backbone." in k or "extra_backbones" in k for k in checkpoint["state_dict"])
    net_config = checkpoint["biqa_config"]["model"]["net"]
    assert net_config["backbone"]["weights"] == "package"
    assert all(extra["weights"] == "package" for extra in net_config["extra_backbones"])
    assert checkpoint["trained"]["recipe"] == "experiment=biq2021_best"
    assert checkpoint["trained"]["split_sizes"] == {"train": 5000, "val": 0, "test": 0}
    assert checkpoint["state_dict"]["net.head.anchors"].shape[0] == 5000
    assert "BIQ2021" in checkpoint["description"] and checkpoint["trained"]["heldout_metrics"]["srcc"] > 0.5


@pytest.mark.slow
def test_the_default_ranks_degraded_photos_below_the_originals():
    """Human-score sense on photos it never saw (scikit-image's): heavy blur and heavy JPEG score lower."""
    checkpoint = read_checkpoint(default_checkpoint())
    net = net_from_checkpoint(checkpoint, "default").eval()
    size = checkpoint["biqa_config"]["data"]["eval_crops"]["size"]
    photos = [Image.fromarray(skimage_data.astronaut()), Image.fromarray(skimage_data.chelsea()).resize((512, 384))]
    originals, degraded = [], []
    for photo in photos:
        # As the default scores: the whole photo at its recipe's resolution.
        photo = photo.resize((size, size))
        blurred = photo.filter(ImageFilter.GaussianBlur(4))
        noisy = Image.fromarray(np.clip(np.asarray(photo) + np.random.default_rng(0).normal(0, 40, (size, size, 3)),
                                        0, 255).astype(np.uint8))
        originals.append(photo)
        degraded += [blurred, noisy]
    batch = torch.stack([torch.from_numpy(np.asarray(p).copy()).permute(2, 0, 1) for p in originals + degraded])
    with torch.no_grad():
        scores = net(batch.float().div(255)).score
    original, worse = scores[:2], scores[2:].view(2, 2)
    assert (worse < original[:, None]).all(), scores.tolist()


@pytest.mark.slow
def test_predict_without_a_checkpoint_uses_the_default_and_says_so(compose_config, tmp_path, capsys):
    from biqa.predict import predict_folder

    folder = tmp_path / "photos"
    folder.mkdir()
    photo = Image.fromarray(skimage_data.astronaut())
    photo.save(folder / "sharp.png")
    photo.filter(ImageFilter.GaussianBlur(8)).save(folder / "blurred.png")
    output = tmp_path / "scores.csv"
    predict_folder(compose_config("predict", [f"input_dir={folder}", f"output={output}", "num_workers=0"]))
    printed = capsys.readouterr().out
    assert "scoring with biqa's shipped default model, kernel probe" in printed
    assert re.search(r"scored 2 of 2 images into .* \(\d+ threads\): \d+\.\d images/s", printed), printed
    scores = {row["image"]: float(row["score"]) for row in csv.DictReader(output.open())}
    assert scores["blurred.png"] < scores["sharp.png"]
