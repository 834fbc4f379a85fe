"""Write the shipped default model (src/biqa/models/pretrained/) from a ridge-probe run.

    python experiments/biq2021/ship_default.py FIT_DIR TEST_STATS.pt

FIT_DIR holds a ridge-probe checkpoint picked on validation SRCC (checkpoints/, split.json: a biqa-train run
folder, or the OUT_DIR of probe_features.py fit); TEST_STATS.pt the held-out images' features
(probe_features.py collect --part test). The file keeps the network weights outside the backbone (the probe's 1,025
numbers and its feature scaling) and the run's config; the backbone is rebuilt from the config's offline
package weights. Before writing, the head-only model must give the full checkpoint's scores on a few test
images; its held-out SRCC / PLCC are then measured on the file itself and stored in it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from biqa.data.loading.crops import decode_resized
from biqa.lit.regression import net_from_checkpoint, read_checkpoint
from biqa.models.pretrained import DEFAULT_CHECKPOINT

sys.path.insert(0, str(Path(__file__).parent))
from probe_features import score  # noqa: E402

TARGET = Path(__file__).resolve().parents[2] / "src" / "biqa" / "models" / "pretrained" / DEFAULT_CHECKPOINT
FROM_CONFIG = "backbone."


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("heldout_stats", type=Path)
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
    check_same_scores(full, head_only, split["test"][:4])
    args.output.parent.mkdir(parents=True, exist_ok=True)
    torch.save(head_only, args.output)
    metrics = score(args.heldout_stats, args.output)  # measured on the file as shipped
    head_only["trained"]["heldout_metrics"] = metrics
    crops = config["data"]["eval_crops"]
    head_only["description"] = (
        f"ridge probe on frozen EfficientNet-Lite0 ({crops['count']} crop of {crops['size']} px from the photo "
        f"resized to {crops['resize']} px), fitted on "
        f"{full['fit']['train_images'] if 'fit' in full else len(split['train'])} BIQ2021 photos; held-out SRCC "
        f"{metrics['srcc']:.3f}, PLCC {metrics['plcc']:.3f} on {metrics['images']} photos"
    )
    torch.save(head_only, args.output)
    record = args.run_dir / "result.json"
    if record.exists():
        logged = json.loads(record.read_text())["metrics"]
        print(f"the run's own test pass: SRCC {logged['test/srcc']:.4f}  PLCC {logged['test/plcc']:.4f}")
    print(f"{args.output}: {args.output.stat().st_size / 1024:.1f} KiB; {head_only['description']}")


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
