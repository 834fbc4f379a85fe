"""Score a folder of images into a CSV, through Lightning's predict loop (a GPU when there is one, batches,
mixed precision if asked): the normalised score and, for checkpoints that record it, the score on the training
dataset's own scale. Depth-guided checkpoints (DGIQA) get depth maps. Unreadable files are reported, never fatal
to the others."""

from __future__ import annotations

import csv
import math
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from PIL import Image
from torch.utils.data import DataLoader

from biqa.data.datasets.records import ImageRecord, ScoreScale
from biqa.data.loading.crops import CropDataset, CropSpec, ImageDecodeError
from biqa.engine import mixed_precision
from biqa.lit.losses import ScoreLoss
from biqa.lit.regression import QualityRegressor, net_from_checkpoint, read_checkpoint
from biqa.models.base import QualityModel
from biqa.models.pretrained import default_checkpoint

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
            blank = {"images": torch.zeros(count, 3, size, size, dtype=torch.uint8),
                     "index": torch.tensor(self.indices[position]), "ok": torch.tensor(False), "error": str(error)}
            if self.depth_provider is not None:
                blank["depth"] = torch.zeros(count, 1, size, size, dtype=torch.uint8)
            return blank


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


def load_net(cfg: DictConfig) -> tuple[QualityModel, CropSpec, dict[str, Any]]:
    """The checkpoint's model with its weights and evaluation crops (and the checkpoint, for its run's config
    and score scale); without ckpt_path, the trained default that ships with biqa (biqa.models.pretrained)."""
    path = cfg.get("ckpt_path") or default_checkpoint()
    checkpoint = read_checkpoint(path)
    if not cfg.get("ckpt_path"):
        print(f"no ckpt_path given: scoring with biqa's shipped default model, "
              f"{checkpoint.get('description', '')} ({path})", flush=True)
    stored = OmegaConf.create(checkpoint["biqa_config"])
    return net_from_checkpoint(checkpoint, str(path)), CropSpec(**(stored.data.get("eval_crops") or cfg.crops)), checkpoint


def depth_provider(cfg: DictConfig, net: QualityModel, checkpoint: dict[str, Any], records: list[ImageRecord]):
    """A depth-guided model (DGIQA) gets maps from `depth` if given, else from its training run's provider."""
    if not getattr(net, "uses_depth", False):
        return None
    provider_cfg = cfg.get("depth") or OmegaConf.create(checkpoint.get("biqa_config") or {}).get("data", {}).get("depth")
    if provider_cfg is None:
        raise ValueError(f"{type(net).__name__} needs depth maps and its checkpoint names no depth provider: pass "
                         "depth={_target_: biqa.data.derived.depth.FolderDepthProvider, root: DIR} or another provider config")
    provider = instantiate(provider_cfg)
    provider.prepare([record for record in records if _decodes(record.path)])  # the others are reported
    return provider


def _decodes(path: Path) -> bool:
    try:
        with Image.open(path) as image:
            image.verify()
        return True
    except (OSError, SyntaxError, ValueError):
        return False


class FolderScorer(QualityRegressor):
    """Scores the images of a batch that decoded; reports the others."""

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Any]:
        ok = batch["ok"]
        errors = [(index, error) for index, error, good in
                  zip(batch["index"].tolist(), batch["error"], ok.tolist(), strict=True) if not good]
        good = {key: batch[key][ok] for key in ("images", "depth", "index") if key in batch}
        if not ok.any():
            return {"index": good["index"], "pred": torch.empty(0), "errors": errors}
        output, _ = self.forward_crops(good)
        pred = output.score.float().view(int(ok.sum()), -1).mean(dim=1)
        return {"index": good["index"].cpu(), "pred": pred.cpu(), "errors": errors}


def accelerator(device: str) -> str:
    if device not in ("auto", "cpu", "gpu"):
        raise ValueError(f"device={device} is unknown; choose auto (a GPU when there is one), cpu or gpu")
    return device


def predict_folder(cfg: DictConfig) -> Path:
    input_dir, output = Path(cfg.input_dir), Path(cfg.output)
    records = folder_records(input_dir)
    net, spec, checkpoint = load_net(cfg)
    # Crops cut in the loader's workers; the module makes them float on the device.
    dataset = TolerantCropDataset(records, list(range(len(records))), replace(spec, cut_on_device=False),
                                  train=False, depth_provider=depth_provider(cfg, net, checkpoint, records))
    loader = DataLoader(dataset, batch_size=cfg.batch_size, num_workers=cfg.num_workers, collate_fn=_collate)
    device = accelerator(cfg.get("device", "auto"))
    precision = cfg.get("precision", "32-true")
    trainer = L.Trainer(accelerator=device, devices=1, logger=False, enable_checkpointing=False,
                        enable_model_summary=False,
                        precision=mixed_precision(device) if precision == "mixed" else precision)
    started = time.perf_counter()
    batches = trainer.predict(FolderScorer(net, {"score": ScoreLoss()}), dataloaders=loader)
    seconds = time.perf_counter() - started
    scores = {i: p for b in batches for i, p in zip(b["index"].tolist(), b["pred"].tolist(), strict=True)}
    failures = {i: e for b in batches for i, e in b["errors"]}
    scale = checkpoint.get("biqa_score_scale")
    native = ScoreScale(**scale) if scale else None
    output.parent.mkdir(parents=True, exist_ok=True)
    with output.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "score", "native_score", "error"])
        for i, record in enumerate(records):
            score = scores.get(i)
            writer.writerow([record.image_id, "" if score is None else f"{score:.6f}",
                             "" if score is None or native is None else f"{native.denormalise(score):.6f}",
                             failures.get(i, "")])
    print(f"scored {len(scores)} of {len(records)} images into {output} on {trainer.strategy.root_device} "
          f"({torch.get_num_threads()} threads): {len(records) / seconds:.1f} images/s, decoding included", flush=True)
    if native is not None:
        direction = "higher is better" if native.higher_is_better else "lower is better"
        print(f"score: normalised [0, 1], higher is better; native_score: {native.name} on "
              f"[{native.low:g}, {native.high:g}], {direction} (the training dataset's scale)", flush=True)
    if failures:
        print(f"{len(failures)} file(s) could not be read (listed in the CSV's error column):", flush=True)
        for _, error in sorted(failures.items()):
            print(f"  {error}", flush=True)
    return output


def _collate(items: list[dict]) -> dict:
    batch = {key: torch.stack([item[key] for item in items]) for key in ("images", "depth", "index", "ok")
             if key in items[0]}
    batch["error"] = [item.get("error", "") for item in items]
    return batch
