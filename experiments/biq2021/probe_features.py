"""The ridge probe (biqa.models.probe + biqa.lit.ridge) fitted from features collected in parallel processes.

    python experiments/biq2021/probe_features.py collect RUN_DIR train_0.pt --part train --shard 0/3  # (x3)
    python experiments/biq2021/probe_features.py collect RUN_DIR val.pt --part val
    python experiments/biq2021/probe_features.py collect RUN_DIR test.pt --part test
    python experiments/biq2021/probe_features.py fit RUN_DIR OUT_DIR val.pt train_0.pt train_1.pt train_2.pt
    python experiments/biq2021/probe_features.py score RUN_DIR test.pt CHECKPOINT

RUN_DIR is a `biqa-train model=ridge_probe ...` run folder: its recorded overrides
(RUN_DIR/.hydra/overrides.yaml) rebuild the same data, split and crops with the current conf/, and each part
is checked against its split.json. `collect` stores the probe's per-crop stage statistics of one part (or a
shard of it) through biqa's own module (RidgeProbeRegressor.crop_statistics: the run's crops, random with
flips for training, seeded for evaluation; the frozen backbone), so that several single-thread processes
share the one expensive step, the backbone pass. `fit` solves the ridge for every penalty of the model
config with the module's own solver, picks the penalty on the validation part's SRCC, and writes a biqa
checkpoint (OUT_DIR/checkpoints/) as the run would have. `score` applies a checkpoint's head (full or
head-only) to stored statistics and prints SRCC / PLCC over the images, as the run's test step computes them.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
import yaml
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf, open_dict

from biqa.config import CONFIG_DIR
from biqa.engine import build_module
from biqa.lit.regression import net_from_checkpoint, read_checkpoint
from biqa.metrics import correlation_metrics


def collect(run_dir: Path, output: Path, part: str = "test", shard: str = "0/1", extra: list[str] = ()) -> None:
    overrides = yaml.safe_load((run_dir / ".hydra" / "overrides.yaml").read_text()) + list(extra)
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    scratch = output.parent / f"{output.stem}_run"
    with open_dict(cfg):
        cfg.paths.output_dir = str(scratch)
        cfg.paths.root_dir = str(run_dir.parents[2])  # the run's root: its decode checks are cached there
        cfg.data.num_workers = 0
        cfg.data.persistent_workers = False
    torch.set_num_threads(cfg.threads or torch.get_num_threads())
    datamodule = instantiate(cfg.data)
    datamodule.setup("fit" if part != "test" else "test")
    expected = json.loads((run_dir / "split.json").read_text())[part]
    indices = getattr(datamodule.split, part)
    records = datamodule.records.records
    if sorted(records[i].image_id for i in indices) != sorted(expected):
        raise SystemExit(f"the rebuilt {part} part differs from the run's split.json")
    position, count = map(int, shard.split("/"))
    indices = indices[position::count]
    # The run's own crops: random crops and flips for training, seeded eval crops otherwise.
    spec = datamodule.train_spec if part == "train" else datamodule.eval_spec
    loader = datamodule._loader(indices, spec, train=part == "train")
    net = instantiate(cfg.model.net).eval()
    module = build_module(cfg.model, net, instantiate(cfg.model.losses), cfg.optim, cfg)
    stats, scores, image_indices, k = [], [], [], 1

    def save(complete: bool) -> None:
        # Saved as it goes, so that a part cut short still gives what it has (`complete` says whether it did).
        torch.save({"stats": torch.cat(stats), "score": torch.cat(scores), "index": torch.cat(image_indices),
                    "crops": k, "part": part, "shard": shard, "overrides": overrides, "complete": complete,
                    "of": len(indices)}, output)

    with torch.no_grad():
        for step, batch in enumerate(loader):
            batch = module.on_after_batch_transfer(batch, 0)
            crop_stats, k = module.crop_statistics(batch)
            stats.append(crop_stats)
            scores.append(batch["score"].double())
            image_indices.append(batch["index"])
            print(f"batch {step}: {sum(len(s) for s in scores)} {part} images", flush=True)
            if step % 4 == 3:
                save(complete=False)
    save(complete=True)
    print(f"{output}: statistics of {sum(len(s) for s in scores)} {part} images", flush=True)


def fit(run_dir: Path, out_dir: Path, val_file: Path, train_files: list[Path]) -> Path:
    val = torch.load(val_file, weights_only=False)
    overrides = val["overrides"]  # the run's, plus any given to collect
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    with open_dict(cfg):
        cfg.paths.output_dir = str(out_dir)
        cfg.paths.root_dir = str(run_dir.parents[2])
    net = instantiate(cfg.model.net).eval()
    module = build_module(cfg.model, net, instantiate(cfg.model.losses), cfg.optim, cfg)
    shards = [torch.load(f, weights_only=False) for f in train_files]
    if sorted(s["shard"] for s in shards) != [f"{i}/{len(shards)}" for i in range(len(shards))]:
        raise SystemExit(f"the training shards {[s['shard'] for s in shards]} do not make a whole part")
    if any(s["overrides"] != overrides for s in shards):
        raise SystemExit("the training and validation features were collected with different overrides")
    module._train = [(s["stats"], s["score"].repeat_interleave(s["crops"])) for s in shards]
    weights, intercept, mean, scale = module._solve()
    per_crop = ((val["stats"] - mean) / scale) @ weights + intercept
    per_image = per_crop.view(len(val["score"]), val["crops"], -1).mean(dim=1)
    srcc = [correlation_metrics(per_image[:, a], val["score"])["srcc"] for a in range(len(module.alphas))]
    best = max(range(len(module.alphas)), key=lambda a: srcc[a])
    with torch.no_grad():  # as RidgeProbeRegressor.on_validation_epoch_end sets them
        net.head.weight.copy_(weights[:, best].view(1, -1).float())
        net.head.bias.fill_(intercept)
        net.feature_mean.copy_(mean.float())
        net.feature_scale.copy_(scale.float())
    (out_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
    (out_dir / "split.json").write_text((run_dir / "split.json").read_text())
    path = out_dir / "checkpoints" / f"epoch000-srcc{srcc[best]:.4f}.ckpt"
    torch.save({"state_dict": {f"net.{k}": v for k, v in net.state_dict().items()},
                "biqa_config": OmegaConf.to_container(cfg, resolve=True),
                "fit": {"alphas": module.alphas, "val_srcc": srcc, "alpha": module.alphas[best],
                        "train_images": sum(len(s["score"]) for s in shards), "val_images": len(val["score"]),
                        "complete": {f.name: s["complete"] for f, s in zip(train_files, shards, strict=True)}
                        | {val_file.name: val["complete"]}}},
               path)
    print(f"{path}: ridge penalty {module.alphas[best]} (validation SRCC per penalty: "
          + ", ".join(f"{a:g}: {v:.4f}" for a, v in zip(module.alphas, srcc, strict=True))
          + f") from {sum(len(s['score']) for s in shards)} training images", flush=True)
    return path


def score(stats_file: Path, checkpoint_path: Path) -> dict[str, float]:
    stored = torch.load(stats_file, weights_only=False)
    checkpoint = read_checkpoint(checkpoint_path)
    net = net_from_checkpoint(checkpoint, str(checkpoint_path)).eval()
    with torch.no_grad():
        per_crop = net.head(net.standardized(stored["stats"].float())).squeeze(-1)
    predictions = per_crop.view(len(stored["score"]), stored["crops"]).mean(dim=1)
    metrics = correlation_metrics(predictions, stored["score"].float()) | {"images": len(predictions),
                                                                          "complete": stored["complete"]}
    print(f"{checkpoint_path}: {len(predictions)} held-out images  "
          + "  ".join(f"{name.upper()} {metrics[name]:.4f}" for name in ("srcc", "plcc", "krcc", "rmse")), flush=True)
    return metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["collect", "fit", "score"])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("paths", type=Path, nargs="+", help="collect: OUTPUT; fit: OUT_DIR VAL TRAIN...; "
                        "score: STATS CHECKPOINT")
    parser.add_argument("--part", choices=["train", "val", "test"], default="test")
    parser.add_argument("--shard", default="0/1", help="i/n: every n-th image from the i-th")
    parser.add_argument("--override", action="append", default=[], help="a Hydra override added to the run's")
    args = parser.parse_args()
    if args.action == "collect":
        collect(args.run_dir, args.paths[0], args.part, args.shard, args.override)
    elif args.action == "fit":
        fit(args.run_dir, args.paths[0], args.paths[1], args.paths[2:])
    else:
        score(args.paths[0], args.paths[1])


if __name__ == "__main__":
    main()
