"""Fit the shipped default model (src/biqa/models/pretrained/) with the recipe of `experiment=biq2021_best` on
every photo of a BIQ2021 root, and write it.

    python experiments/biq2021/ship_default.py "lite0_512.pt|lite1_512.pt|lite2_512.pt" --search search.json \\
        --root /path/to/biq2021

FEATURES are `search.py extract` outputs for every photo, one per backbone of the recipe, in the recipe's
order: `a.pt|b.pt` for a head per backbone (model.net.combine=mean), `a.pt+b.pt` for one head on both
(concat). They are the recipe's training statistics, since it trains on the whole, unflipped photo it
scores. --search is `search.py evaluate`'s JSON with these features' kernel-ridge row: each head's kernel
width and penalty are the medians of the three splits' validation picks for it, and
the row's held-out figures over the splits are stored in the file as the recipe's (a model fitted on every
photo has no held-out photos of its own). The fit is biqa's own (biqa.lit.ridge.solve and install, as the probe's training
solves it). Before writing, the model built from the recipe, run on photos through its live backbones, must
reproduce the fitted predictions, and the written file, loaded as biqa-predict loads it, must too.
"""

from __future__ import annotations

import argparse
import collections
import json
import statistics
import sys
import tempfile
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf, open_dict

from biqa.config import CONFIG_DIR
from biqa.engine import build_module
from biqa.lit.regression import net_from_checkpoint, read_checkpoint
from biqa.lit.ridge import install, solve
from biqa.models.pretrained import DEFAULT_CHECKPOINT

sys.path.insert(0, str(Path(__file__).parent))
from search import load_features  # noqa: E402

TARGET = Path(__file__).resolve().parents[2] / "src" / "biqa" / "models" / "pretrained" / DEFAULT_CHECKPOINT
FROM_CONFIG = ["backbone.", "extra_backbones."]
CHECKED_PHOTOS = 6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("features", help="search.py extract outputs: a|b, a head per backbone; a+b, one head")
    parser.add_argument("--search", type=Path, required=True, help="search.py evaluate's JSON")
    parser.add_argument("--root", required=True, help="the BIQ2021 root the features were extracted from")
    parser.add_argument("--experiment", default="biq2021_best")
    parser.add_argument("--output", type=Path, default=TARGET)
    args = parser.parse_args()
    row = next((r for r in json.loads(args.search.read_text())
                if r["features"] == args.features and r["solver"] == "kernel_ridge"), None)
    if row is None:
        raise SystemExit(f"{args.search} has no kernel_ridge row for {args.features}: run search.py evaluate on them")
    members = args.features.split("|")
    choices = [split["choice"] if len(members) > 1 else [split["choice"]] for split in row["splits"]]
    picks = [median_setting([split[m] for split in choices]) for m in range(len(members))]

    scratch = Path(tempfile.mkdtemp(prefix="biqa-ship-"))
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("train", [f"experiment={args.experiment}", f"data.dataset.root={args.root}",
                                "data.image_cache=false", "data.num_workers=0", "threads=1"])
    with open_dict(cfg):
        cfg.paths.root_dir = cfg.paths.output_dir = str(scratch)
    torch.set_num_threads(1)
    net = instantiate(cfg.model.net).eval()
    if len(net.heads()) != len(members):
        raise SystemExit(f"experiment={args.experiment} has {len(net.heads())} head(s); {args.features} names "
                         f"{len(members)} feature set(s): one per head")
    fitted = collections.defaultdict(float)
    for h, (member, setting) in enumerate(zip(members, picks, strict=True)):
        x, y, ids = load_features(member)
        fit = solve(x, y, True, [setting["alpha"]], [setting["gamma"]])
        install(net, h, fit, 0)
        solutions, mean, scale = fit
        for image_id, value in zip(ids, solutions.predict((x - mean) / scale)[:, 0].tolist(), strict=True):
            fitted[image_id] += value / len(members)

    datamodule = instantiate(cfg.data)
    records = datamodule.load_records().records
    rows = list(range(0, len(records), len(records) // CHECKED_PHOTOS))[:CHECKED_PHOTOS]
    expected = torch.tensor([fitted[records[i].image_id] for i in rows])
    # The recipe's training view is its evaluation view (the whole photo, unflipped): scored as predicted.
    check("the recipe's model on the photos", score(cfg, net, datamodule, rows), expected)

    head_only = {
        "state_dict": {f"net.{k}": v for k, v in net.state_dict().items() if not k.startswith(tuple(FROM_CONFIG))},
        "weights_from_config": FROM_CONFIG,
        "biqa_config": OmegaConf.to_container(cfg, resolve=True),
        "trained": {"recipe": f"experiment={args.experiment}", "photos": len(fitted), "features": args.features,
                    "picked_on_validation": picks,
                    "split_sizes": {"train": len(fitted), "val": 0, "test": 0},
                    "heldout_metrics": {"srcc": row["median_test_srcc"], "plcc": row["median_test_plcc"],
                                        "splits": row["splits"], "of": "the recipe over the study's splits"}},
    }
    backbones = " + ".join(b["name"] for b in [cfg.model.backbone, *cfg.model.net.extra_backbones])
    head_only["description"] = (
        f"kernel probe on frozen {backbones} (whole photo resized to {cfg.data.eval_crops.resize} px), fitted on "
        f"{len(fitted)} BIQ2021 photos; its recipe's held-out SRCC {row['median_test_srcc']:.3f}, "
        f"PLCC {row['median_test_plcc']:.3f} (median of {len(row['splits'])} splits)")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    torch.save(head_only, args.output)
    shipped = net_from_checkpoint(read_checkpoint(args.output), str(args.output)).eval()
    check("the written file", score(cfg, shipped, datamodule, rows), expected)
    print(f"{args.output}: {args.output.stat().st_size / 2**20:.1f} MiB; {head_only['description']}")


def median_setting(choices: list[str]) -> dict[str, float]:
    """Each hyper-parameter's median over the splits' validation picks ("gamma=0.5,alpha=0.3" each)."""
    settings = [{k: float(v) for k, v in (item.split("=") for item in choice.split(","))} for choice in choices]
    return {key: statistics.median_low(s[key] for s in settings) for key in settings[0]}


def score(cfg, net, datamodule, rows: list[int]) -> torch.Tensor:
    module = build_module(cfg.model, net, instantiate(cfg.model.losses), cfg.optim, cfg)
    loader = datamodule.eval_loader(rows)
    with torch.no_grad():
        return torch.cat([module.per_image_scores(module.on_after_batch_transfer(batch, 0)) for batch in loader])


def check(what: str, got: torch.Tensor, expected: torch.Tensor) -> None:
    print(f"{what}: {[round(v, 5) for v in got.tolist()]}\nfitted:  {[round(v, 5) for v in expected.tolist()]}")
    if not torch.allclose(got.double(), expected.double(), atol=1e-3):
        raise SystemExit(f"{what} does not reproduce the fitted predictions: not shipped")


if __name__ == "__main__":
    main()
