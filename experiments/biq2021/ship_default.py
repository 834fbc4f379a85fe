"""Write the shipped default model (src/biqa/models/pretrained/) from a run of its recipe on every photo.

    biqa-train experiment=biq2021_best data.dataset.root=/path/to/biq2021 data.split.strategy=all \
        "model.module.alphas=[ALPHA]" "model.module.gammas=[GAMMA]"
    python experiments/biq2021/ship_default.py RUN_DIR --heldout STUDY_DIR/kernel_probe/biq2021

RUN_DIR is that run's folder: the recipe fitted on all photos (`data.split.strategy=all`), with the kernel width
and penalty that the recipe's validation parts picked in the three-split study. The file keeps the network
outside the backbone (feature scaling, the kernel head's anchors and weights) and the run's config; the
backbone is rebuilt from the config's offline package weights. Before writing, the head-only model must give
the full checkpoint's scores on a few photos. A model fitted on every photo has no held-out photos: the file
records the recipe's held-out figures from the study's splits (--heldout: its seed=K/result.json records).
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import torch

from biqa.data.loading.crops import decode_resized
from biqa.lit.regression import net_from_checkpoint, read_checkpoint
from biqa.models.pretrained import DEFAULT_CHECKPOINT

TARGET = Path(__file__).resolve().parents[2] / "src" / "biqa" / "models" / "pretrained" / DEFAULT_CHECKPOINT
FROM_CONFIG = "backbone."


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--heldout", type=Path, required=True,
                        help="the recipe's study jobs: a folder of seed=K/result.json")
    parser.add_argument("--output", type=Path, default=TARGET)
    args = parser.parse_args()
    best = [p for p in (args.run_dir / "checkpoints").glob("*.ckpt") if p.name != "last.ckpt"]
    if len(best) != 1:
        raise SystemExit(f"expected one best checkpoint in {args.run_dir / 'checkpoints'}, found {best}")
    full = read_checkpoint(best[0])
    split = json.loads((args.run_dir / "split.json").read_text())
    config = full["biqa_config"]
    head_only = {
        "state_dict": {k: v for k, v in full["state_dict"].items() if not k.startswith(f"net.{FROM_CONFIG}")},
        "weights_from_config": [FROM_CONFIG],
        "biqa_config": config,
        "trained": {"run": args.run_dir.name, "checkpoint": best[0].name, "fit": full.get("fit"),
                    "split_sizes": {part: len(split[part]) for part in ("train", "val", "test")}},
    }
    check_same_scores(full, head_only, split["train"][:4])
    head_only["trained"]["heldout_metrics"] = heldout = recipe_heldout(args.heldout)
    crops = config["data"]["eval_crops"]
    head = config["model"]["net"]["head"]
    head_only["description"] = (
        f"{'kernel' if head == 'rbf_kernel' else 'ridge'} probe on frozen EfficientNet-Lite0 (the photo resized "
        f"to {crops['resize']} px), fitted on {len(split['train'])} BIQ2021 photos; its recipe's held-out SRCC "
        f"{heldout['srcc']:.3f}, PLCC {heldout['plcc']:.3f} (median of {len(heldout['splits'])} splits)"
    )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    torch.save(head_only, args.output)
    print(f"{args.output}: {args.output.stat().st_size / 1024:.1f} KiB; {head_only['description']}")


def recipe_heldout(jobs: Path) -> dict:
    records = sorted(jobs.glob("seed=*/result.json"))
    if not records:
        raise SystemExit(f"no seed=*/result.json under {jobs}: point --heldout at the recipe's study jobs")
    splits = {p.parent.name: json.loads(p.read_text())["metrics"] for p in records}
    test_images = len(json.loads((records[0].parent / "split.json").read_text())["test"])
    return {"srcc": statistics.median(m["test/srcc"] for m in splits.values()),
            "plcc": statistics.median(m["test/plcc"] for m in splits.values()),
            "splits": {seed: {"srcc": m["test/srcc"], "plcc": m["test/plcc"]} for seed, m in splits.items()},
            "test_images_per_split": test_images}


def check_same_scores(full: dict, head_only: dict, image_ids: list[str]) -> None:
    dataset = full["biqa_config"]["data"]["dataset"]
    crops = full["biqa_config"]["data"]["eval_crops"]
    size = crops["size"]
    pixels = [decode_resized(next(Path(dataset["root"]).glob(image_id.rsplit(".", 1)[0] + ".*")), crops["resize"],
                             crops["jpeg_draft"]) for image_id in image_ids]
    batch = torch.stack([torch.from_numpy(p[:size, :size].copy()).permute(2, 0, 1) for p in pixels]).float().div(255)
    with torch.no_grad():
        expected = net_from_checkpoint(full, "full").eval()(batch).score
        got = net_from_checkpoint(head_only, "head-only").eval()(batch).score
    print(f"full checkpoint {expected.tolist()}\nhead-only       {got.tolist()}")
    if not torch.allclose(expected, got, atol=1e-6):
        raise SystemExit("the head-only model does not reproduce the full checkpoint: not written")


if __name__ == "__main__":
    main()
