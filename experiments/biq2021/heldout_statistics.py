"""The ridge probe's held-out figures without waiting for a run's own test pass.

    python experiments/biq2021/heldout_statistics.py collect RUN_DIR STATS.pt   # while RUN_DIR trains
    python experiments/biq2021/heldout_statistics.py score RUN_DIR STATS.pt CHECKPOINT

`collect` rebuilds the run's data from its recorded overrides (RUN_DIR/.hydra/overrides.yaml) with the current
conf/, checks that its test part is the run's (split.json), and stores the probe's per-crop stage statistics
of every test image through biqa's own module (RidgeProbeRegressor.crop_statistics: the same crops, the same
frozen backbone). The backbone pass, the expensive part, then overlaps the run's training. `score` applies a
checkpoint's fitted head (the run's best, or the shipped head-only file) to them and prints SRCC / PLCC, as
the run's test step would compute them.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
import yaml
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import open_dict

from biqa.config import CONFIG_DIR
from biqa.engine import build_module, net_from_checkpoint, read_checkpoint
from biqa.metrics import correlation_metrics


def collect(run_dir: Path, output: Path) -> None:
    overrides = yaml.safe_load((run_dir / ".hydra" / "overrides.yaml").read_text())
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    scratch = output.parent / f"{output.stem}_run"
    with open_dict(cfg):
        cfg.paths.output_dir = str(scratch)
        cfg.paths.root_dir = str(run_dir.parents[2])  # the run's root: its decode checks are cached there
        cfg.data.num_workers = 0
    torch.set_num_threads(cfg.threads or torch.get_num_threads())
    datamodule = instantiate(cfg.data)
    datamodule.setup("test")
    expected = json.loads((run_dir / "split.json").read_text())["test"]
    records = datamodule.records.records
    test_ids = [records[i].image_id for i in datamodule.split.test]
    if sorted(test_ids) != sorted(expected):
        raise SystemExit("the rebuilt test part differs from the run's split.json")
    net = instantiate(cfg.model.net).eval()
    module = build_module(cfg.model, net, instantiate(cfg.model.losses), cfg.optim, cfg)
    stats, scores, indices, k = [], [], [], 1
    with torch.no_grad():
        for step, batch in enumerate(datamodule.test_dataloader()):
            batch = module.on_after_batch_transfer(batch, 0)
            crop_stats, k = module.crop_statistics(batch)
            stats.append(crop_stats)
            scores.append(batch["score"].double())
            indices.append(batch["index"])
            print(f"batch {step}: {sum(len(s) for s in scores)} test images", flush=True)
    torch.save({"stats": torch.cat(stats), "score": torch.cat(scores), "index": torch.cat(indices), "crops": k,
                "overrides": overrides}, output)
    print(f"{output}: statistics of {sum(len(s) for s in scores)} test images", flush=True)


def score(stats_file: Path, checkpoint_path: Path) -> dict[str, float]:
    stored = torch.load(stats_file, weights_only=False)
    checkpoint = read_checkpoint(checkpoint_path)
    net = net_from_checkpoint(checkpoint, str(checkpoint_path)).eval()
    with torch.no_grad():
        per_crop = net.head(net.standardized(stored["stats"].float())).squeeze(-1)
    predictions = per_crop.view(len(stored["score"]), stored["crops"]).mean(dim=1)
    metrics = correlation_metrics(predictions, stored["score"].float())
    print(f"{checkpoint_path}: {len(predictions)} held-out images  "
          + "  ".join(f"{name.upper()} {float(value):.4f}" for name, value in metrics.items()), flush=True)
    return metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["collect", "score"])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("stats", type=Path)
    parser.add_argument("checkpoint", type=Path, nargs="?")
    args = parser.parse_args()
    if args.action == "collect":
        collect(args.run_dir, args.stats)
    else:
        score(args.stats, args.checkpoint)


if __name__ == "__main__":
    main()
