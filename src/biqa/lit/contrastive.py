"""BFRD's distortion-encoder stage: supervised contrastive learning over synthetic distortion types and levels.

Each sample is a reference image distorted with one random (type, level) from the project's generator
(biqa.data.datasets.distortions), seen twice: two random crops, each distorted independently with that same
(type, level). Positives for the NT-Xent loss are all views in the batch that share both the type and the
level (supervised contrastive learning, Khosla et al. 2020), so the encoder learns what a distortion looks
like regardless of the content it sits on. `biqa-pretrain-distortion` runs this stage and saves the encoder
for BFRD to load frozen.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from numpy.typing import NDArray
from omegaconf import DictConfig, OmegaConf
from PIL import Image
from torch.optim.lr_scheduler import CosineAnnealingLR
from torch.utils.data import DataLoader, Dataset

from biqa.data.datasets.distortions import DISTORTION_NAMES, LEVELS, distort, distortion_index
from biqa.data.loading.crops import unit_range
from biqa.models.distortion_encoder import DistortionEncoder

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def supervised_nt_xent(
    embeddings: torch.Tensor, labels: torch.Tensor, temperature: float = 0.1
) -> torch.Tensor:
    """Supervised NT-Xent (SupCon, "L_out"): for each anchor, the mean over its positives of
    -log softmax of the cosine similarity / temperature, against every other view in the batch.

    embeddings (N, D), not necessarily normalised; labels (N,). Anchors without a positive are skipped.
    """
    z = F.normalize(embeddings.float(), dim=1)
    itself = torch.eye(len(z), dtype=torch.bool, device=z.device)
    logits = (z @ z.T / temperature).masked_fill(itself, float("-inf"))
    log_prob = logits - logits.logsumexp(dim=1, keepdim=True)
    positives = (labels[:, None] == labels[None, :]) & ~itself
    counts = positives.sum(dim=1)
    has_positive = counts > 0
    if not bool(has_positive.any()):
        raise ValueError("no anchor has a positive: each sample needs at least two views with its label")
    per_anchor = -log_prob.masked_fill(~positives, 0.0).sum(dim=1) / counts.clamp(min=1)
    return per_anchor[has_positive].mean()


def distortion_class(distortion_type: torch.Tensor, level: torch.Tensor) -> torch.Tensor:
    """One label per (type, level 1..LEVELS) pair: views are positives exactly when they share both."""
    return distortion_type * LEVELS + (level - 1)


def _skimage_photos() -> dict[str, Callable[[], NDArray]]:
    import skimage.data

    return {
        "astronaut": skimage.data.astronaut,
        "chelsea": skimage.data.chelsea,
        "coffee": skimage.data.coffee,
        "rocket": skimage.data.rocket,
        "immunohistochemistry": skimage.data.immunohistochemistry,
        "motorcycle": lambda: skimage.data.stereo_motorcycle()[0],
        "hubble_deep_field": skimage.data.hubble_deep_field,
        "retina": skimage.data.retina,
        "camera": skimage.data.camera,
        "brick": skimage.data.brick,
        "grass": skimage.data.grass,
        "gravel": skimage.data.gravel,
        "coins": skimage.data.coins,
        "moon": skimage.data.moon,
        "cell": skimage.data.cell,
    }


def dead_leaves(size: int, rng: np.random.Generator, min_radius: float = 2.0) -> NDArray[np.uint8]:
    """A dead-leaves image: opaque discs of random colour, radii drawn from p(r) ~ r^-3 between
    `min_radius` and size / 4, stacked until the image is covered. Its edges and flat areas at every
    scale follow natural images' statistics (the classic texture-acutance test chart), and it belongs to
    no dataset, so an encoder pretrained on it has seen none of anyone's test content.
    """
    max_radius = size / 4
    image = np.zeros((size, size, 3), dtype=np.uint8)
    covered = np.zeros((size, size), dtype=bool)
    uncovered = size * size
    # Discs are drawn front to back, each painting only what the discs before it left uncovered.
    while uncovered:
        u = rng.random()
        radius = (min_radius**-2 - u * (min_radius**-2 - max_radius**-2)) ** -0.5  # inverse CDF of r^-3
        if uncovered > size * size // 100:
            cy, cx = rng.uniform(-radius, size + radius, 2)
        else:
            # The last 1% of pixels: centre the disc on one of them, or random discs would take ages to hit.
            cy, cx = np.divmod(rng.choice(np.flatnonzero(~covered)), size) + rng.uniform(-0.5, 0.5, 2)
        top, bottom = max(0, int(cy - radius)), min(size, int(cy + radius) + 1)
        left, right = max(0, int(cx - radius)), min(size, int(cx + radius) + 1)
        if top >= bottom or left >= right:
            continue
        rows, cols = np.ogrid[top:bottom, left:right]
        disc = (rows - cy) ** 2 + (cols - cx) ** 2 <= radius**2
        fresh = disc & ~covered[top:bottom, left:right]
        image[top:bottom, left:right][fresh] = rng.integers(0, 256, 3, dtype=np.uint8)
        covered[top:bottom, left:right] |= disc
        uncovered -= int(fresh.sum())
    return image


def _as_rgb(image: NDArray) -> NDArray[np.uint8]:
    image = np.asarray(image)
    if image.ndim == 2:
        image = np.stack([image] * 3, axis=-1)
    return np.ascontiguousarray(image[..., :3]).astype(np.uint8)


def _shrink(image: NDArray[np.uint8], max_side: int | None) -> NDArray[np.uint8]:
    if max_side is None or max(image.shape[:2]) <= max_side:
        return image
    scale = max_side / max(image.shape[:2])
    size = (round(image.shape[1] * scale), round(image.shape[0] * scale))
    return np.asarray(Image.fromarray(image).resize(size, Image.Resampling.LANCZOS))


def load_reference_images(
    source: str,
    max_side: int | None = 384,
    dead_leaves_count: int = 0,
    dead_leaves_size: int = 256,
    seed: int = 0,
) -> list[NDArray[np.uint8]]:
    """Pristine RGB references for the contrastive stage, plus `dead_leaves_count` dead-leaves images.

    `source`: "skimage_unseen" (the photos bundled with scikit-image that biqa.data.datasets.synthetic does not use,
    so that the encoder has seen none of the default dataset's test content), "skimage" (all 15 bundled
    photos: fine for real datasets, a content leak for the synthetic one), "none" (dead leaves only) or a
    folder of image files (e.g. a dataset's training references). Grey photos become RGB; images larger
    than `max_side` are shrunk (Lanczos) so that crops hold content rather than flat areas.
    """
    if source in ("skimage", "skimage_unseen"):
        from biqa.data.datasets.synthetic import COLOUR_SOURCES, GREY_SOURCES

        used_by_synthetic = set(COLOUR_SOURCES) | set(GREY_SOURCES)
        photos = _skimage_photos()
        names = [n for n in photos if source == "skimage" or n not in used_by_synthetic]
        images = [photos[name]() for name in names]
    elif source == "none":
        images = []
    else:
        folder = Path(source)
        if not folder.is_dir():
            raise FileNotFoundError(
                f"reference source {source!r} is not skimage_unseen, skimage, none or a folder"
            )
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise FileNotFoundError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {folder}")
        images = [np.asarray(Image.open(p).convert("RGB")) for p in files]
    rng = np.random.default_rng(seed)
    images += [dead_leaves(dead_leaves_size, rng) for _ in range(dead_leaves_count)]
    if not images:
        raise ValueError("no reference images: choose a source with photos or set dead_leaves_count > 0")
    return [_shrink(_as_rgb(image), max_side) for image in images]


class DistortedViews(Dataset):
    """Two views of a randomly distorted reference per sample, for the contrastive stage.

    Sample i takes reference i % len(references), one distortion type from `distortions` and one level
    from `levels`, and returns two random `crop_size` crops of the reference, each distorted with that
    (type, level) using its own randomness (noise, motion direction, ...).
    Returns {"views": uint8 (2, 3, crop, crop), "distortion_type": long (label index in
    DISTORTION_NAMES), "distortion_level": long (1..5)}.

    `seed`: None draws fresh randomness at every visit from torch's generator (training: new samples each
    epoch, reproducible under `seed_everything` and DataLoader worker seeding); an int fixes sample i for
    good (validation, tests).
    """

    def __init__(
        self,
        references: Sequence[NDArray[np.uint8]],
        crop_size: int = 96,
        samples: int = 2048,
        distortions: Sequence[str] | None = None,
        levels: Sequence[int] = tuple(range(1, LEVELS + 1)),
        seed: int | None = None,
    ) -> None:
        smallest = min(min(image.shape[:2]) for image in references)
        if crop_size > smallest:
            raise ValueError(f"crop_size {crop_size} is larger than the smallest reference side {smallest}")
        self.references = list(references)
        self.crop_size, self.samples, self.seed = crop_size, samples, seed
        self.types = [distortion_index(name) for name in (distortions or DISTORTION_NAMES)]
        self.levels = list(levels)

    def __len__(self) -> int:
        return self.samples

    def _rng(self, index: int) -> np.random.Generator:
        if self.seed is None:
            return np.random.default_rng(int(torch.randint(0, 2**62, ()).item()))
        return np.random.default_rng([self.seed, index])

    def _crop(self, image: NDArray[np.uint8], rng: np.random.Generator) -> NDArray[np.uint8]:
        top = rng.integers(0, image.shape[0] - self.crop_size + 1)
        left = rng.integers(0, image.shape[1] - self.crop_size + 1)
        return image[top : top + self.crop_size, left : left + self.crop_size]

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        rng = self._rng(index)
        reference = self.references[index % len(self.references)]
        distortion_type = int(rng.choice(self.types))
        level = int(rng.choice(self.levels))
        views = [
            distort(np.ascontiguousarray(self._crop(reference, rng)), distortion_type, level, rng)
            for _ in range(2)
        ]
        return {
            "views": torch.from_numpy(np.stack(views)).permute(0, 3, 1, 2).contiguous(),
            "distortion_type": torch.tensor(distortion_type),
            "distortion_level": torch.tensor(level),
        }


class DistortionContrastive(L.LightningModule):
    """Trains a DistortionEncoder (embedding + projection head) with supervised NT-Xent over
    (distortion type, level) classes. AdamW with a cosine decay over the whole run.
    """

    def __init__(
        self,
        encoder: DistortionEncoder,
        temperature: float = 0.1,
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.temperature, self.lr, self.weight_decay = temperature, lr, weight_decay

    def contrastive_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        views = batch["views"]
        images = unit_range(views.flatten(0, 1))
        labels = distortion_class(batch["distortion_type"], batch["distortion_level"]).repeat_interleave(
            views.shape[1]
        )
        return supervised_nt_xent(self.encoder.project(self.encoder(images)), labels, self.temperature)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = self.contrastive_loss(batch)
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=True)
        return loss

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self.log("val/loss", self.contrastive_loss(batch), prog_bar=True, on_epoch=True)

    def configure_optimizers(self):
        optimizer = torch.optim.AdamW(self.encoder.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        steps = max(1, int(self.trainer.estimated_stepping_batches))
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": CosineAnnealingLR(optimizer, steps), "interval": "step"},
        }


def pretrain_distortion_encoder(cfg: DictConfig) -> Path:
    """Runs the contrastive stage of conf/pretrain_distortion.yaml and saves the encoder; returns its path.

    `data.val_references` references (drawn by the seed) are held out: the validation loss is measured on
    content the encoder never saw.
    """
    if cfg.get("threads"):
        torch.set_num_threads(cfg.threads)
    L.seed_everything(cfg.seed, workers=True)
    data = cfg.data
    references = load_reference_images(
        data.references, data.max_side, data.dead_leaves, data.dead_leaves_size, seed=cfg.seed
    )
    if not 0 <= data.val_references < len(references):
        raise ValueError(
            f"data.val_references must leave training references: got {data.val_references} of {len(references)}"
        )
    # Shuffled, so the held-out references mix photos and dead leaves.
    references = [references[i] for i in np.random.default_rng(cfg.seed).permutation(len(references))]
    split = len(references) - data.val_references
    common = {"crop_size": data.crop_size, "distortions": data.distortions, "levels": list(data.levels)}
    train_set = DistortedViews(references[:split], samples=data.train_samples, **common)
    loaders = {"train_dataloaders": _loader(train_set, data, shuffle=True)}
    if data.val_references:
        val_set = DistortedViews(references[split:], samples=data.val_samples, seed=cfg.seed, **common)
        loaders["val_dataloaders"] = _loader(val_set, data, shuffle=False)
    encoder: DistortionEncoder = instantiate(cfg.encoder)
    module = DistortionContrastive(encoder, **cfg.module)
    loggers = [instantiate(c) for c in (cfg.get("logger") or {}).values() if c is not None]
    trainer: L.Trainer = instantiate(cfg.trainer, logger=loggers or False)
    trainer.fit(module, **loaders)
    checkpoint = Path(cfg.checkpoint_path)
    recipe = OmegaConf.to_container(
        OmegaConf.masked_copy(cfg, ["seed", "encoder", "module", "data"]), resolve=True
    )
    metrics = {name: float(value) for name, value in trainer.callback_metrics.items()}
    encoder.save(checkpoint, pretraining={"config": recipe, "metrics": metrics})
    log.info(
        "distortion encoder saved to %s; train BFRD with model.net.distortion_checkpoint=%s",
        checkpoint,
        checkpoint,
    )
    return checkpoint


def _loader(dataset: DistortedViews, data: DictConfig, shuffle: bool) -> DataLoader:
    return DataLoader(
        dataset,
        batch_size=data.batch_size,
        shuffle=shuffle,
        num_workers=data.num_workers,
        persistent_workers=data.num_workers > 0,
        drop_last=shuffle,
    )
