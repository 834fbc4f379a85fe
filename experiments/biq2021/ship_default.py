"""Write the shipped default model (src/biqa/models/pretrained/) from a finished ridge-probe run.

    python experiments/biq2021/ship_default.py RUN_DIR

RUN_DIR is the biqa-train run folder (its result.json names the best checkpoint). The file keeps the network
weights outside the backbone (the probe's 1,025 numbers and its feature scaling) and the run's config; the
backbone is rebuilt from the config's offline package weights. Before writing, the head-only model must give
the full checkpoint's scores on a few of the run's test images (and does not write otherwise).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from biqa.data.loading.crops import decode_resized
from biqa.engine import net_from_checkpoint, read_checkpoint
from biqa.models.pretrained import DEFAULT_CHECKPOINT

TARGET = Path(__file__).resolve().parents[2] / "src" / "biqa" / "models" / "pretrained" / DEFAULT_CHECKPOINT
FROM_CONFIG = "backbone."


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--output", type=Path, default=TARGET)
    args = parser.parse_args()
    record = json.loads((args.run_dir / "result.json").read_text())
    full = read_checkpoint(record["checkpoint"])
    metrics = record["metrics"]
    config = full["biqa_config"]
    head_only = {
        "state_dict": {k: v for k, v in full["state_dict"].items() if not k.startswith(f"net.{FROM_CONFIG}")},
        "weights_from_config": [FROM_CONFIG],
        "biqa_config": config,
        "description": (
            f"ridge probe on frozen EfficientNet-Lite0 at {config['data']['eval_crops']['size']} px, fitted on "
            f"{record['num_images']['train']} BIQ2021 photos; held-out SRCC {metrics['test/srcc']:.3f}, "
            f"PLCC {metrics['test/plcc']:.3f} on {record['num_images']['test']} photos"
        ),
        "trained": {"run": args.run_dir.name, "metrics": metrics, "num_images": record["num_images"],
                    "provenance": record["provenance"]},
    }
    check_same_scores(full, head_only, args.run_dir)
    torch.save(head_only, args.output)
    print(f"{args.output}: {args.output.stat().st_size / 1024:.1f} KiB; {head_only['description']}")


def check_same_scores(full: dict, head_only: dict, run_dir: Path, images: int = 4) -> None:
    lines = (run_dir / "test_predictions.csv").read_text().splitlines()[1:images + 1]
    root = Path(full["biqa_config"]["data"]["dataset"]["root"]) / full["biqa_config"]["data"]["dataset"]["image_folder"]
    crops = full["biqa_config"]["data"]["eval_crops"]
    size = crops["size"]
    pixels = [decode_resized(root / line.rsplit(",", 2)[0].strip('"'), crops["resize"], crops["jpeg_draft"])
              for line in lines]
    batch = torch.stack([torch.from_numpy(p[:size, :size].copy()).permute(2, 0, 1) for p in pixels]).float().div(255)
    with torch.no_grad():
        expected = net_from_checkpoint(full, "full").eval()(batch).score
        got = net_from_checkpoint(head_only, "head-only").eval()(batch).score
    logged = torch.tensor([float(line.rsplit(",", 1)[1]) for line in lines])
    print(f"full {expected.tolist()}\nhead-only {got.tolist()}\nlogged {logged.tolist()}")
    if not torch.allclose(expected, got, atol=1e-6):
        raise SystemExit("the head-only model does not reproduce the full checkpoint: not written")


if __name__ == "__main__":
    main()
