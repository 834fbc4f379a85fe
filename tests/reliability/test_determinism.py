"""Same seed, same run on CPU: the same split (recorded in each run's folder) and the same metrics, whatever
the number of data-loading workers; another seed gives another split."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from omegaconf import open_dict
from tests.reliability.conftest import RUN

from biqa.data.datasets.records import DatasetRecords, ImageRecord, ScoreScale
from biqa.data.datasets.splits import make_split
from biqa.engine import train

pytestmark = pytest.mark.slow

SETTING = RUN + ["trainer.deterministic=true", "model.net.dropout=0.2"]


def run(compose_config, folder: Path, overrides: list[str]) -> tuple[dict[str, float], dict]:
    cfg = compose_config("train", SETTING + overrides)
    with open_dict(cfg):
        cfg.paths.output_dir = str(folder)
    folder.mkdir()
    metrics = train(cfg)
    record = json.loads((folder / "result.json").read_text())
    assert record["metrics"] == metrics
    return metrics, json.loads((folder / "split.json").read_text())


def test_same_seed_same_split_and_metrics_with_or_without_loader_workers(compose_config, tmp_path):
    first, first_split = run(compose_config, tmp_path / "first", ["++data.num_workers=0"])
    second, second_split = run(compose_config, tmp_path / "second", ["++data.num_workers=2"])

    assert second_split == first_split
    parts = [set(first_split[part]) for part in ("train", "val", "test")]
    assert all(parts) and not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
    assert second == first  # exactly: every crop, the order and dropout follow from the seed


def test_another_seed_another_split():
    records = DatasetRecords("toy", Path("."), [
        ImageRecord(Path(f"{i}.png"), 0.5, 0.5, f"{i}.png", reference_id=f"r{i // 3}") for i in range(60)
    ], ScoreScale(0.0, 1.0))
    assert make_split(records, seed=0) == make_split(records, seed=0)
    assert make_split(records, seed=1).test != make_split(records, seed=0).test
