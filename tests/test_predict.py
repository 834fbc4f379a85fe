"""biqa-predict through Lightning's predict loop: device=auto or cpu, batches, a DGIQA checkpoint scored with
depth maps from its training run's provider, and scores on the training dataset's own scale beside the
normalised ones; files that do not decode are reported."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from tests.conftest import TINY

from biqa.engine import train
from biqa.predict import predict_folder

pytestmark = pytest.mark.slow

SMALL_DGIQA = ["model=dgiqa", "data/depth=not_learned_blur_proxy", "model.net.bridge_channels=[8,8,16,16]",
               "model.net.num_heads=2", "model.net.stack_channels=16", "model.net.grid=3"]


def image_folder(folder: Path) -> Path:
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(5):
        Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(folder / f"good{i}.png")
    (folder / "broken.jpg").write_bytes(b"not an image")
    return folder


def rows(path: Path) -> dict[str, dict[str, str]]:
    return {row["image"]: row for row in csv.DictReader(path.open())}


def test_a_dgiqa_checkpoint_scores_a_folder_in_batches_on_its_native_scale(compose_config, tmp_path, capsys):
    cfg = compose_config("train", [*TINY, *SMALL_DGIQA, "+trainer.limit_train_batches=2", "test=false"])
    train(cfg)
    checkpoint_path = json.loads((Path(cfg.paths.output_dir) / "result.json").read_text())["checkpoint"]
    checkpoint = torch.load(checkpoint_path, map_location="cpu", weights_only=False)
    assert checkpoint["biqa_score_scale"] == {"low": 0.0, "high": 1.0, "higher_is_better": True, "name": "SSIM"}

    folder = image_folder(tmp_path / "images")
    first = tmp_path / "cpu.csv"
    predict_folder(compose_config("predict", [f"input_dir={folder}", f"output={first}", f"ckpt_path={checkpoint_path}",
                                              "num_workers=0", "batch_size=2", "device=cpu"]))
    scored = rows(first)
    assert set(scored) == {f"good{i}.png" for i in range(5)} | {"broken.jpg"}
    assert scored["broken.jpg"]["score"] == "" and "cannot decode" in scored["broken.jpg"]["error"]
    scores = {name: float(row["score"]) for name, row in scored.items() if row["score"]}
    assert len(scores) == 5 and all(np.isfinite(list(scores.values())))
    assert len(set(scores.values())) > 1
    # (DGIQA's forward needs depth: the maps came from its training run's provider, made for these images.)

    # A dataset scored as MOS 1-5, lower is better: the native column maps back onto it.
    checkpoint["biqa_score_scale"] = {"low": 1.0, "high": 5.0, "higher_is_better": False, "name": "MOS"}
    rescaled = tmp_path / "mos.ckpt"
    torch.save(checkpoint, rescaled)
    second = tmp_path / "auto.csv"
    predict_folder(compose_config("predict", [f"input_dir={folder}", f"output={second}", f"ckpt_path={rescaled}",
                                              "num_workers=0", "batch_size=4", "device=auto"]))
    assert "native_score: MOS on [1, 5], lower is better" in capsys.readouterr().out
    for name, row in rows(second).items():
        if name in scores:
            assert float(row["score"]) == pytest.approx(scores[name], abs=1e-6)
            assert float(row["native_score"]) == pytest.approx(1 + 4 * (1 - scores[name]), abs=1e-5)


def test_an_unknown_device_is_refused_with_the_choices(compose_config, tmp_path):
    folder = image_folder(tmp_path / "images")
    with pytest.raises(ValueError, match="choose auto"):
        predict_folder(compose_config("predict", [f"input_dir={folder}", "device=tpu9", "num_workers=0"]))
