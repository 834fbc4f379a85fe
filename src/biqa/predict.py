"""Score a folder of images into a CSV. Unreadable files are reported, never fatal to the others."""

from __future__ import annotations

import csv
import logging
import math
from dataclasses import replace
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader
from tqdm import tqdm

from biqa.config import without_pretrained_weights
from biqa.data.datasets.records import ImageRecord
from biqa.data.loading.crops import CropDataset, CropSpec, ImageDecodeError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif"}


class TolerantCropDataset(CropDataset):
    """Returns blank crops flagged `ok = False` for files that do not decode, so one bad file cannot stop
    the loader; the caller reports them."""

    def __getitem__(self, position: int) -> dict[str, torch.Tensor]:
        try:
            item = super().__getitem__(position)
            item["ok"] = torch.tensor(True)
            return item
        except ImageDecodeError as error:
            size, count = self.spec.size, self.spec.count
            return {"images": torch.zeros(count, 3, size, size, dtype=torch.uint8),
                    "index": torch.tensor(self.indices[position]), "ok": torch.tensor(False),
                    "error": str(error)}


def folder_records(input_dir: Path) -> list[ImageRecord]:
    if not input_dir.is_dir():
        raise FileNotFoundError(f"input_dir={input_dir} is not a folder of images")
    # A link whose target is gone is listed too, so that it is reported rather than silently left out.
    paths = sorted(p for p in input_dir.rglob("*")
                   if (p.is_file() or p.is_symlink()) and p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise FileNotFoundError(f"input_dir={input_dir} holds no image files ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return [ImageRecord(path=p, score=math.nan, raw_score=math.nan, image_id=str(p.relative_to(input_dir)))
            for p in paths]


def load_net(cfg: DictConfig):
    """The checkpoint's model with its weights, or the configured default model with an untrained head."""
    if cfg.get("ckpt_path"):
        checkpoint = torch.load(cfg.ckpt_path, map_location="cpu", weights_only=False)
        stored = OmegaConf.create(checkpoint["biqa_config"])
        net = instantiate(without_pretrained_weights(stored.model.net))
        state = {k.removeprefix("net."): v for k, v in checkpoint["state_dict"].items() if k.startswith("net.")}
        net.load_state_dict(state)
        return net, CropSpec(**(stored.data.get("eval_crops") or cfg.crops))
    log.warning("no ckpt_path given: scoring with the default model and an UNTRAINED head; "
                "the scores are not quality predictions. Pass ckpt_path=PATH from a biqa-train run.")
    print("WARNING: no checkpoint - untrained head, scores are meaningless", flush=True)
    return instantiate(cfg.model.net), CropSpec(**cfg.crops)


@torch.no_grad()
def predict_folder(cfg: DictConfig) -> Path:
    input_dir, output = Path(cfg.input_dir), Path(cfg.output)
    records = folder_records(input_dir)
    net, spec = load_net(cfg)
    net.eval()
    # Crops cut in the workers: this loop feeds the net directly, without the module's batch hook.
    dataset = TolerantCropDataset(records, list(range(len(records))), replace(spec, cut_on_device=False),
                                  train=False)
    loader = DataLoader(dataset, batch_size=cfg.batch_size, num_workers=cfg.num_workers,
                        collate_fn=_collate)
    scores: dict[int, float] = {}
    failures: dict[int, str] = {}
    for batch in tqdm(loader, desc="scoring", unit="batch"):
        ok = batch["ok"]
        failed = [e for e, good in zip(batch["error"], ok, strict=True) if not good]
        for index, error in zip(batch["index"][~ok].tolist(), failed, strict=True):
            failures[index] = error
        if ok.any():
            images = batch["images"][ok].float().div(255)
            b, k = images.shape[:2]
            predictions = net(images.flatten(0, 1)).score.view(b, k).mean(1)
            scores.update(zip(batch["index"][ok].tolist(), predictions.tolist(), strict=True))
    output.parent.mkdir(parents=True, exist_ok=True)
    with output.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "score", "error"])
        for i, record in enumerate(records):
            writer.writerow([record.image_id, f"{scores[i]:.6f}" if i in scores else "", failures.get(i, "")])
    print(f"scored {len(scores)} of {len(records)} images into {output}", flush=True)
    if failures:
        print(f"{len(failures)} file(s) could not be read (listed in the CSV's error column):", flush=True)
        for _, error in sorted(failures.items()):
            print(f"  {error}", flush=True)
    return output


def _collate(items: list[dict]) -> dict:
    batch = {key: torch.stack([item[key] for item in items]) for key in ("images", "index", "ok")}
    batch["error"] = [item.get("error", "") for item in items]
    return batch
