"""The evaluation protocol on real layouts: official splits (BIQ2021, KonIQ-10k), official_or_random, and the
cross-dataset run (train on all of A, test on all of B) end to end."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from PIL import Image

from biqa.data.datasets.cross_dataset import train_on_a_test_on_b
from biqa.data.datasets.readers.biq2021 import BIQ2021
from biqa.data.datasets.readers.custom_csv import CustomCSV
from biqa.data.datasets.readers.koniq10k import KonIQ10k
from biqa.data.datasets.splits import make_split
from biqa.engine import train


def write_jpeg(path: Path, rng: np.random.Generator, size: int = 40) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(path)


def biq2021_tree(root: Path, n_train: int, n_test: int) -> Path:
    rng = np.random.default_rng(0)
    names = [f"ss01 ({i}).jpg" for i in range(n_train + n_test)]
    for name in names:
        write_jpeg(root / "Images" / name, rng, size=8)
    rows = [f"{name},{rng.random():.4f}" for name in names]
    (root / "Train (Images and MOS).csv").write_text("Image Name,MOS,,\n" + "".join(f"{r},,\n" for r in rows[:n_train]))
    if n_test:
        (root / "Test (Images and MOS).csv").write_text("Image Name,MOS\n" + "".join(f"{r}\n" for r in rows[n_train:]))
    return root


def test_official_or_random_takes_biq2021_test_csv_when_present(tmp_path):
    records = BIQ2021(biq2021_tree(tmp_path, n_train=20, n_test=6))()
    split = make_split(records, seed=1, strategy="official_or_random", val_fraction=0.2)
    test_ids = {records.records[i].image_id for i in split.test}
    assert test_ids == {f"Images/ss01 ({i}).jpg" for i in range(20, 26)}
    assert sorted(split.train + split.val) == list(range(20))
    assert len(split.val) == 4


def test_official_or_random_splits_the_training_csv_by_seed_without_test_csv(tmp_path):
    records = BIQ2021(biq2021_tree(tmp_path, n_train=20, n_test=0))()
    a, b = (make_split(records, seed=s, strategy="official_or_random", test_fraction=0.2) for s in (0, 1))
    assert len(a.test) == 4 and a.test != b.test
    assert sorted(a.train + a.val + a.test) == list(range(20))
    with pytest.raises(ValueError, match="official_or_random"):
        make_split(records, strategy="official")


def test_koniq_official_split_uses_its_sets_file(tmp_path):
    rng = np.random.default_rng(0)
    names = [f"{1000 + i}.jpg" for i in range(9)]
    sets = ["training"] * 5 + ["validation"] * 2 + ["test"] * 2
    for name in names:
        write_jpeg(tmp_path / "512x384" / name, rng, size=8)
    header = "image_name,c1,c2,c3,c4,c5,c_total,MOS,SD,MOS_zscore"
    rows = [f"{n},0,0,0,0,0,0,3.0,0.5,{50 + i}" for i, n in enumerate(names)]
    (tmp_path / "koniq10k_scores_and_distributions.csv").write_text("\n".join([header, *rows]) + "\n")
    (tmp_path / "koniq10k_distributions_sets.csv").write_text(
        "\n".join([header + ",set", *(f"{r},{s}" for r, s in zip(rows, sets, strict=True))]) + "\n")
    records = KonIQ10k(tmp_path)()
    for strategy in ("official", "official_or_random"):
        split = make_split(records, seed=3, strategy=strategy)
        assert (split.train, split.val, split.test) == ([0, 1, 2, 3, 4], [5, 6], [7, 8])


def custom_csv_dataset(root: Path, n: int, seed: int, low: float, high: float) -> Path:
    """Images whose brightness follows the score, scored on [low, high], in a plain folder + CSV."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        unit = rng.random()
        pixels = np.clip(unit * 255 + rng.normal(0, 20, (48, 48, 3)), 0, 255).astype(np.uint8)
        (root / "img").mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(root / "img" / f"{i}.png")
        rows.append((f"img/{i}.png", low + unit * (high - low)))
    with (root / "scores.csv").open("w", newline="") as file:
        csv.writer(file).writerows([("file", "mos"), *rows])
    return root


def test_joined_records_train_on_all_of_a_and_test_on_all_of_b(tmp_path):
    a = CustomCSV(custom_csv_dataset(tmp_path / "a", 10, 0, 1, 5), "scores.csv", "file", "mos", [1, 5], name="a")()
    b = CustomCSV(custom_csv_dataset(tmp_path / "b", 6, 1, 0, 100), "scores.csv", "file", "mos", [0, 100], name="b")()
    joined = train_on_a_test_on_b(a, b)
    split = make_split(joined, seed=0, strategy="official", val_fraction=0.2)
    assert split.test == list(range(10, 16))
    assert sorted(split.train + split.val) == list(range(10)) and len(split.val) == 2
    assert joined.records[10].path == b.records[0].path
    assert joined.records[10].score == pytest.approx(b.records[0].score)


CROSS = [
    "experiment=cross_dataset",
    "data=custom_csv",
    "model/backbone=test_efficientnet",
    "data.dataset.csv_file=scores.csv",
    "data.dataset.path_column=file",
    "data.dataset.score_column=mos",
    "data.dataset.score_range=[1,5]",
    "data.dataset.name=a",
    "data.test_dataset.reader=custom_csv",
    "+data.test_dataset.csv_file=scores.csv",
    "+data.test_dataset.path_column=file",
    "+data.test_dataset.score_column=mos",
    "+data.test_dataset.score_range=[0,100]",
    "+data.test_dataset.name=b",
    "data.split.val_fraction=0.2",
    "data.train_crops.size=32",
    "data.train_crops.count=2",
    "data.eval_crops.size=32",
    "data.eval_crops.count=2",
    "data.batch_size=4",
    "data.num_workers=0",
    "data.persistent_workers=false",
    "trainer.max_epochs=1",
]


@pytest.mark.slow
def test_cross_dataset_config_trains_on_a_and_tests_on_all_of_b(compose_config, tmp_path):
    a = custom_csv_dataset(tmp_path / "a", 16, 0, 1, 5)
    b = custom_csv_dataset(tmp_path / "b", 7, 1, 0, 100)
    cfg = compose_config("train", CROSS + [f"data.dataset.root={a}", f"data.test_dataset.root={b}"])
    metrics = train(cfg)
    run = Path(cfg.paths.output_dir)
    record = json.loads((run / "result.json").read_text())
    assert record["num_images"] == {"train": 13, "val": 3, "test": 7}
    assert record["provenance"]["dataset"] == "a->b"
    split = json.loads((run / "split.json").read_text())
    assert sorted(split["test"]) == [f"img/{i}.png" for i in range(7)]
    for name in ("srcc", "plcc", "plcc_logistic"):
        assert np.isfinite(metrics[f"test/{name}"])
    logged = (run / "csv" / "metrics.csv").read_text().splitlines()[0]
    assert "test/plcc_logistic" in logged and "test/plcc" in logged


def test_cross_dataset_refuses_a_random_split(compose_config, tmp_path):
    a = custom_csv_dataset(tmp_path / "a", 4, 0, 1, 5)
    cfg = compose_config("train", CROSS + [f"data.dataset.root={a}", f"data.test_dataset.root={a}",
                                           "data.split.strategy=random"])
    with pytest.raises(InstantiationException, match="data.split.strategy=official"):
        instantiate(cfg.data)
