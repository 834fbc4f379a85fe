"""Seconds per training epoch with and without the stored trunk (`+feature_cache=frozen_trunk`), side by side.

Each case trains the same model for one epoch twice on the same fixed views: with `feature_cache.mode=images`
(the whole backbone runs every step: the frozen stages forward, the trained ones forward and backward) and
with the store (the frozen stages read from disk). The store is built first and its build time reported
apart; validation is off, so the clock sees training steps only (Lightning's Timer, train stage).

    python benchmarks/trunk_cache.py --root ../shared/data/biq2021            # both cases
    python benchmarks/trunk_cache.py --root ../shared/data/biq2021 --cases lite0_384 --images 200

Cases (the photos are the first `--images` rows of the BIQ2021 CSV, resized whole to the case's size):
  lite0_384: offline EfficientNet-Lite0 (ImageNet weights), 384 px, stages 0-3 stored, stage 4 trained.
  swin_b_224: Swin-B (random weights: no offline Swin weights here; the cost is the same), 224 px, stages
      0-2 stored, stage 3 trained: the GPU user's case of a decoder over a half-frozen big backbone.
Prints a table and one JSON line.
"""

from __future__ import annotations

import argparse
import csv
import json
import tempfile
import time
from pathlib import Path

import lightning as L
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate
from lightning.pytorch.callbacks import Timer
from omegaconf import DictConfig, open_dict

from biqa.config import CONFIG_DIR
from biqa.data.derived.feature_cache import use_feature_cache
from biqa.lit.regression import QualityRegressor

CASES = {
    "lite0_384": {"size": 384, "images": 400, "overrides": [
        "model/backbone=efficientnet_lite0_offline", "feature_cache.until_stage=3"]},
    "swin_b_224": {"size": 224, "images": 300, "overrides": [
        "model/backbone=swin_base", "model.backbone.weights=none", "model.backbone.out_indices=[0,1,2,3]",
        "feature_cache.until_stage=2"]},
}
BIQ2021_CSV = "Train (Images and MOS).csv"


def subset_root(dataset_root: Path, images: int, folder: Path) -> Path:
    """A custom-CSV dataset of the first `images` photos of the BIQ2021 root (its Images folder linked)."""
    folder.mkdir(parents=True, exist_ok=True)
    with (dataset_root / BIQ2021_CSV).open(newline="") as source:
        rows = [row for row in csv.reader(source)][1 : images + 1]
    with (folder / "subset.csv").open("w", newline="") as target:
        writer = csv.writer(target)
        writer.writerow(["image", "mos"])
        writer.writerows([row[0], row[1]] for row in rows)
    link = folder / "Images"
    if not link.exists():
        link.symlink_to((dataset_root / "Images").resolve())
    return folder


def case_config(case: dict, root: Path, work: Path, mode: str, args: argparse.Namespace) -> DictConfig:
    size = case["size"]
    overrides = [
        "model=pooled", "+feature_cache=frozen_trunk", f"feature_cache.mode={mode}", "feature_cache.views=1",
        f"feature_cache.dir={work / 'features'}", "data=custom_csv", f"data.dataset.root={root}",
        "data.dataset.csv_file=subset.csv", "data.dataset.path_column=image", "data.dataset.score_column=mos",
        "data.dataset.score_range=[0,1]", "data.dataset.image_folder=Images", "data.split.strategy=all",
        f"data.train_crops.size={size}", f"data.train_crops.resize={size}", "data.train_crops.count=1",
        f"data.eval_crops.size={size}", f"data.eval_crops.resize={size}", "data.eval_crops.count=1",
        f"data.batch_size={args.batch_size}", f"data.num_workers={args.workers}", "data.persistent_workers=false",
        f"paths.root_dir={work}", f"paths.output_dir={work / 'run'}", *case["overrides"],
    ]
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    with open_dict(cfg):
        cfg.data.run_dir = str(work / "run")
    return cfg


def train_epoch_seconds(cfg: DictConfig) -> tuple[float, float, int]:
    """(store build s, training epoch s, training images) of one epoch of `cfg` from a fixed seed."""
    L.seed_everything(0, workers=True)
    net = instantiate(cfg.model.net)
    datamodule = use_feature_cache(instantiate(cfg.data), net, cfg.feature_cache)
    start = time.perf_counter()
    datamodule.prepare_data()
    build = time.perf_counter() - start
    timer = Timer()
    trainer = L.Trainer(accelerator="cpu", devices=1, max_epochs=1, limit_val_batches=0, num_sanity_val_steps=0,
                        logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, callbacks=[timer])
    trainer.fit(QualityRegressor(net, instantiate(cfg.model.losses), optim=cfg.optim), datamodule=datamodule)
    return build, timer.time_elapsed("train"), len(datamodule.split.train)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, required=True, help="a BIQ2021 root (Images/ + the training CSV)")
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--images", type=int, default=None, help="photos per case (default: the case's own)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--workers", type=int, default=1, help="loader processes of the image path")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--work", type=Path, default=None, help="work folder (default: a new temp folder)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    work = args.work or Path(tempfile.mkdtemp(prefix="trunk_cache_"))

    results = []
    for name in args.cases:
        case = CASES[name]
        images = args.images or case["images"]
        root = subset_root(args.root, images, work / name / "data")
        timings = {}
        for mode in ("features", "images"):  # the store first: its build is timed on its own
            build, epoch, count = train_epoch_seconds(case_config(case, root, work / name, mode, args))
            timings[mode] = epoch
            if mode == "features":
                timings["build"] = build
        results.append({"case": name, "images": count, "size": case["size"], "store_build_s": round(timings["build"], 1),
                        "epoch_without_s": round(timings["images"], 1), "epoch_with_s": round(timings["features"], 1),
                        "speedup": round(timings["images"] / timings["features"], 2)})

    print(f"\n{'case':12s} {'images':>6s} {'px':>4s} {'store build s':>13s} {'epoch s, no store':>17s} "
          f"{'epoch s, store':>14s} {'speed-up':>8s}")
    for r in results:
        print(f"{r['case']:12s} {r['images']:6d} {r['size']:4d} {r['store_build_s']:13.1f} {r['epoch_without_s']:17.1f} "
              f"{r['epoch_with_s']:14.1f} {r['speedup']:7.2f}x")
    record = {"benchmark": "trunk_cache", "threads": args.threads, "batch_size": args.batch_size,
              "workers": args.workers, "cases": results}
    print(json.dumps(record))
    return record


if __name__ == "__main__":
    main()
