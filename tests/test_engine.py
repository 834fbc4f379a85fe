"""End to end on a tiny synthetic dataset: train + test, evaluate the checkpoint, predict a folder."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import open_dict
from PIL import Image
from tests.conftest import TINY

from biqa.engine import evaluate, train

pytestmark = pytest.mark.slow


@pytest.fixture
def trained_run(compose_config, tmp_path):
    cfg = compose_config("train", TINY + ["trainer.max_epochs=2"])
    metrics = train(cfg)
    return cfg, metrics, Path(cfg.paths.output_dir)


def test_train_writes_record_checkpoint_split_and_test_metrics(trained_run):
    cfg, metrics, run = trained_run
    record = json.loads((run / "result.json").read_text())
    for name in ("srcc", "plcc", "krcc", "rmse"):
        assert np.isfinite(record["metrics"][f"test/{name}"])
    assert Path(record["checkpoint"]).exists()
    assert (run / "checkpoints" / "last.ckpt").exists()
    assert (run / "test_scatter.png").stat().st_size > 0
    split = json.loads((run / "split.json").read_text())
    assert len(split["test"]) == record["num_images"]["test"] > 0
    assert record["provenance"]["backbone_weights"] == ["none"]
    rows = list(csv.DictReader((run / "test_predictions.csv").open()))
    assert len(rows) == record["num_images"]["test"]


def test_eval_reproduces_the_test_metrics_from_the_checkpoint(trained_run, compose_config):
    _, metrics, run = trained_run
    record = json.loads((run / "result.json").read_text())
    cfg = compose_config("eval", [f"ckpt_path={record['checkpoint']}", "trainer.enable_progress_bar=false"])
    again = evaluate(cfg)
    for name in ("srcc", "plcc", "krcc", "rmse"):
        assert again[f"test/{name}"] == pytest.approx(metrics[f"test/{name}"], abs=1e-6)


def test_eval_finds_the_stored_dataset_at_another_root(trained_run, compose_config, tmp_path):
    _, metrics, run = trained_run
    record = json.loads((run / "result.json").read_text())
    moved = tmp_path / "moved_dataset"
    cfg = compose_config("eval", [f"ckpt_path={record['checkpoint']}", f"dataset_root={moved}",
                                  "trainer.enable_progress_bar=false"])
    again = evaluate(cfg)
    assert any(moved.iterdir())          # the (synthetic) dataset was read from the new root
    assert again["test/srcc"] == pytest.approx(metrics["test/srcc"], abs=1e-6)


def test_predict_scores_good_files_and_reports_bad_ones(trained_run, compose_config, tmp_path):
    _, _, run = trained_run
    record = json.loads((run / "result.json").read_text())
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(folder / f"good{i}.png")
    (folder / "broken.jpg").write_bytes(b"not an image")
    output = tmp_path / "out.csv"
    cfg = compose_config("predict", [f"input_dir={folder}", f"output={output}",
                                     f"ckpt_path={record['checkpoint']}", "num_workers=0"])
    from biqa.predict import predict_folder

    predict_folder(cfg)
    rows = {r["image"]: r for r in csv.DictReader(output.open())}
    assert set(rows) == {"good0.png", "good1.png", "good2.png", "broken.jpg"}
    assert all(np.isfinite(float(rows[f"good{i}.png"]["score"])) for i in range(3))
    assert rows["broken.jpg"]["score"] == "" and "cannot decode" in rows["broken.jpg"]["error"]


def test_rerun_resumes_from_its_last_checkpoint(compose_config, caplog):
    cfg = compose_config("train", TINY + ["trainer.max_epochs=1", "test=false"])
    train(cfg)
    last = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
    first_step = torch.load(last, weights_only=False)["global_step"]
    with open_dict(cfg):
        cfg.trainer.max_epochs = 2
    with caplog.at_level("INFO", logger="biqa.engine"):
        train(cfg)
    assert f"resuming from {last}" in caplog.text
    assert torch.load(last, weights_only=False)["global_step"] == 2 * first_step


def test_predictions_carry_distortion_labels_and_a_moe_model_records_its_routing(compose_config):
    cfg = compose_config("train", TINY + ["model=lifeiqa", "model/backbone=test_efficientnet",
                                          "model.net.embed_dim=32", "model.net.num_heads=2", "model.net.depth=1"])
    record = train(cfg)
    run = Path(cfg.paths.output_dir)
    predictions = list(csv.DictReader((run / "test_predictions.csv").open()))
    assert {row["distortion_type"] for row in predictions} <= {"gaussian_blur", "gaussian_noise", "jpeg"}
    assert {row["distortion_level"] for row in predictions} <= {"1", "2"}
    routing = list(csv.DictReader((run / "test_routing.csv").open()))
    assert np.isfinite(record["test/srcc"])
    # Every test image, 2 crops x 6 query tokens x top-2 experts, one router.
    assert len(routing) == len(predictions) * 2 * 6 * 2
    assert {row["image"] for row in routing} == {row["image"] for row in predictions}
    assert {row["router"] for row in routing} == {"net.moe.moe.router"}
    per_token = {}
    for row in routing:
        key = (row["image"], row["crop"], row["token"])
        per_token[key] = per_token.get(key, 0.0) + float(row["weight"])
    assert np.allclose(list(per_token.values()), 1.0, atol=1e-4)


def test_a_model_without_experts_writes_no_routing(trained_run):
    _, _, run = trained_run
    assert not (run / "test_routing.csv").exists()
