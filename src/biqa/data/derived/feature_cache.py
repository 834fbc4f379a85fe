"""Backbone features computed once and reused: the data path of decoder studies on a frozen backbone.

With `+feature_cache=frozen_backbone`, every image of the dataset gets `views` fixed crops (seeded by the
image, not by the split), the frozen backbone runs on them once, and the maps of every stage up to its
deepest requested one are stored under `<dir>/<key>/` where the key hashes the dataset's images, the
backbone's weights and the crop settings. Every decoder variant and split seed with the same key reads the
same files, whichever of those stages it uses (a probe reading all five stages of EfficientNet and a decoder
reading the last four share one store); the datamodule yields `features` instead of `images` and the model
skips its backbone (`QualityModel.supports_cached_features`).

What changes against the image path: training draws `train_crops.count` of the fixed views per visit
instead of fresh random crops, without flips; evaluation uses the first `eval_crops.count` views.
`mode: images` gives exactly this data path with the backbone run every step (to check the cache).

With `+feature_cache=frozen_trunk` (`until_stage: N`) the store holds the frozen trunk, stages 0..N, and the
backbone's stages above N train with the decoder: batches carry `trunk` (stage -> maps of N and of the tapped
stages below it) and the regression module runs the trained stages on them (`Backbone.forward_from`). The
frozen stages cost nothing after the first pass, and the run is the same as without the store: the trained
stages see exactly the maps the frozen ones would compute (to float16 rounding, or exactly with float32).
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import uuid
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from biqa.data.loading.crops import CropDataset, CropSpec, net_inputs
from biqa.data.loading.datamodule import IQADataModule
from biqa.data.loading.resumable import EpochShuffle, ResumableLoader, SkippingBatchSampler
from biqa.data.loading.workers import SignalSafeLoader
from biqa.models.base import QualityModel

log = logging.getLogger(__name__)

MODES = ("features", "images")
META_FILE = "meta.json"


class FeatureStore:
    """Stage maps of every image's fixed views: one (images, views, C, h, w) array per backbone stage on
    disk, `stage{i}.npy` for timm's stage i."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.meta = json.loads((folder / META_FILE).read_text())
        self.stages = [np.load(folder / f"stage{i}.npy", mmap_mode="r") for i in range(self.meta["num_stages"])]

    def views(self, index: int, views: torch.Tensor, stages: list[int]) -> list[torch.Tensor]:
        chosen = views.numpy()
        return [torch.from_numpy(np.ascontiguousarray(self.stages[s][index][chosen])) for s in stages]

    @classmethod
    def build(cls, folder: Path, backbone: nn.Module, deepest: int, crops: CropDataset, meta: dict,
              batch_size: int, num_workers: int, device: str) -> FeatureStore:
        """Writes into a private folder renamed into place at the end, so a killed build or two processes
        building at once never leave a half-written store under the final name."""
        partial = folder.with_name(f".partial-{folder.name}-{uuid.uuid4().hex[:8]}")
        partial.mkdir(parents=True)
        dtype = np.dtype(meta["dtype"])
        original_device = next(backbone.parameters()).device
        was_training, requested = backbone.training, backbone.out_indices
        backbone.out_indices = list(range(deepest + 1))
        backbone.eval().to(device)
        loader = SignalSafeLoader(crops, batch_size=max(1, batch_size // crops.spec.count), num_workers=num_workers)
        arrays: list[np.ndarray] = []
        try:
            with torch.no_grad():
                for batch in tqdm(loader, desc="backbone features", unit="batch", dynamic_ncols=True):
                    images = net_inputs({"images": batch["images"].to(device)})["images"]
                    b, v = images.shape[:2]
                    stages = backbone(images.flatten(0, 1))
                    if not arrays:
                        arrays = [np.lib.format.open_memmap(partial / f"stage{i}.npy", mode="w+", dtype=dtype,
                                                            shape=(len(crops), v, *s.shape[1:]))
                                  for i, s in enumerate(stages)]
                    for array, stage in zip(arrays, stages, strict=True):
                        positions = batch["index"].numpy()
                        array[positions] = stage.view(b, v, *stage.shape[1:]).cpu().numpy().astype(dtype)
            for array in arrays:
                array.flush()
            del arrays
            (partial / META_FILE).write_text(json.dumps({**meta, "num_stages": len(stages)}, indent=1))
            try:
                partial.rename(folder)
            except OSError:
                log.info("another process finished %s first; using its store", folder)
                shutil.rmtree(partial, ignore_errors=True)
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise
        finally:
            backbone.out_indices = requested
            backbone.to(original_device).train(was_training)
        return cls(folder)


class CachedViews(Dataset):
    """K of an image's fixed views per visit: random ones in training (torch's seeded RNG), the first K
    in evaluation. Yields their stored features (and the crops, for models with pixel branches), or in
    `images` mode the crops alone."""

    def __init__(self, indices: list[int], count: int, num_views: int, train: bool, crops: CropDataset,
                 store: FeatureStore | None = None, stages: list[int] | None = None,
                 with_images: bool = False, key: str = "features", seed: int = 0) -> None:
        self.indices, self.count, self.num_views, self.train = indices, count, num_views, train
        self.store, self.crops, self.stages, self.with_images, self.key = store, crops, stages, with_images, key
        self.seed = seed

    def stored(self, index: int, views: torch.Tensor) -> list[torch.Tensor] | dict[int, torch.Tensor]:
        """`features`: the maps in stage order; `trunk`: keyed by stage, for Backbone.forward_from."""
        maps = self.store.views(index, views, self.stages)
        return dict(zip(self.stages, maps, strict=True)) if self.key == "trunk" else maps

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, key: int | tuple[int, int]) -> dict:
        """`key`: a position, or in training (position, epoch) from `EpochShuffle`: each visit's views are a
        function of (seed, epoch, image), so that a run resumed mid-epoch draws the views it would have."""
        position, epoch = key if isinstance(key, tuple) else (key, 0)
        index = self.indices[position]
        if self.train:
            order = np.random.default_rng((self.seed, epoch, index)).permutation(self.num_views)
            views = torch.from_numpy(order[: self.count])
        else:
            views = torch.arange(self.count)
        if self.store is not None and not self.with_images:
            return {self.key: self.stored(index, views), **labels(self.crops.records[index], index)}
        item = self.crops[index]  # the view crops cover every image, in index order
        item["images"] = item["images"][views]
        if self.store is not None:
            item[self.key] = self.stored(index, views)
        return item


class CachedFeatureDataModule(L.LightningDataModule):
    """Wraps the image datamodule (its records, validation and split) and serves cached features: of the whole
    frozen backbone, or with `until_stage` of its frozen trunk (stages 0..until_stage) under trained stages."""

    def __init__(self, images: IQADataModule, net: QualityModel, dir: str, views: int = 8,
                 dtype: str = "float16", batch_size: int = 64, device: str = "auto", mode: str = "features",
                 seed: int = 0, until_stage: int | None = None) -> None:
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"feature_cache.mode '{mode}' is unknown; choose one of {', '.join(MODES)}")
        if not getattr(net, "supports_cached_features", False):
            raise ValueError(f"{type(net).__name__} cannot take cached features (it has several backbones or "
                             "reads depth maps); drop +feature_cache for it")
        backbones = net.backbone_modules()
        if len(backbones) != 1:
            raise ValueError(f"the feature cache stores one backbone; {type(net).__name__} has {len(backbones)}")
        backbone = backbones[0]
        if until_stage is None and any(p.requires_grad for p in backbone.parameters()):
            raise ValueError("+feature_cache=frozen_backbone needs the backbone wholly frozen: model.backbone.freeze=all "
                             "(to train its top stages over a stored trunk: +feature_cache=frozen_trunk)")
        if until_stage is not None:
            problem = backbone.trunk_problem(until_stage, "feature_cache.until_stage")
            if problem:
                raise ValueError(problem)
        if images.depth_provider is not None:
            raise ValueError("the feature cache does not carry depth maps; drop data/depth or the cache")
        train, evaluation = images.train_spec, images.eval_spec
        if train.size != evaluation.size or train.resize != evaluation.resize:
            raise ValueError("with the feature cache, train and eval crops share their views: give "
                             "data.train_crops and data.eval_crops the same size and resize")
        if views < max(train.count, evaluation.count):
            raise ValueError(f"feature_cache.views={views} is fewer than the crops asked per image "
                             f"({train.count} train, {evaluation.count} eval)")
        self.images, self.backbone, self.until_stage = images, backbone, until_stage
        self.deepest_stored = backbone.out_indices[-1] if until_stage is None else until_stage
        self.with_images = net.needs_images_with_features
        self.root, self.num_views, self.dtype, self.mode, self.seed = Path(dir), views, dtype, mode, seed
        self.build_batch_size = batch_size
        self.device = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
        self.store: FeatureStore | None = None

    # The image datamodule's state, for the engine's record and predictions.
    @property
    def records(self):
        return self.images.records

    @property
    def split(self):
        return self.images.split

    @property
    def depth_provider(self):
        return None

    def view_crops(self) -> CropDataset:
        records = self.images.load_records()
        spec = CropSpec(size=self.images.eval_spec.size, count=self.num_views, resize=self.images.eval_spec.resize,
                        small_images=self.images.eval_spec.small_images)
        return CropDataset(records.records, list(range(len(records))), spec, train=False, seed=self.seed)

    def store_folder(self) -> tuple[Path, dict]:
        crops = self.view_crops()
        images = hashlib.sha1("\n".join(f"{r.image_id}\t{r.path}" for r in crops.records).encode()).hexdigest()
        key = {"images": images, "backbone": backbone_fingerprint(self.backbone, self.deepest_stored),
               "crop": crops.spec.size,
               "resize": crops.spec.resize, "small_images": crops.spec.small_images, "views": self.num_views,
               "seed": self.seed, "dtype": self.dtype}
        digest = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
        return self.root / f"{self.images.load_records().name}-{digest}", key

    def prepare_data(self) -> None:
        self.images.prepare_data()
        if self.mode == "features":
            self.open_store()

    def open_store(self) -> FeatureStore:
        if self.store is None:
            folder, key = self.store_folder()
            if (folder / META_FILE).exists():
                log.info("feature cache: reusing %s", folder)
            else:
                log.info("feature cache: computing backbone features of %d images x %d views into %s",
                         len(self.images.load_records()), self.num_views, folder)
                # The build must not move the training's random streams: runs read the same numbers
                # whether or not they built the store.
                with torch.random.fork_rng(devices=[]):
                    FeatureStore.build(folder, self.backbone, self.deepest_stored, self.view_crops(), key,
                                       self.build_batch_size, self.images.num_workers, self.device)
            self.store = FeatureStore(folder)
        return self.store

    def setup(self, stage: str | None = None) -> None:
        self.images.setup(stage)
        if self.mode == "features":
            self.open_store()

    def _loader(self, indices: list[int], count: int, train: bool) -> DataLoader:
        crops = self.view_crops()
        store = self.store if self.mode == "features" else None
        seed = int(self.images.split_args.get("seed", 0))
        dataset = CachedViews(indices, count, self.num_views, train, crops, store=store, stages=self.stored_stages(),
                              with_images=self.with_images, key="features" if self.until_stage is None else "trunk",
                              seed=seed)
        images = self.images
        workers = 0 if store is not None and not self.with_images else images.num_workers
        if not train:
            return SignalSafeLoader(dataset, batch_size=images.eval_batch_size, num_workers=workers)
        # As the image datamodule's: an order that is a function of (seed, epoch), resumable mid-epoch.
        batches = SkippingBatchSampler(EpochShuffle(len(dataset), seed), images.batch_size,
                                       drop_last=len(indices) > images.batch_size)
        return ResumableLoader(dataset, batch_sampler=batches, num_workers=workers,
                               generator=torch.Generator().manual_seed(seed))

    def stored_stages(self) -> list[int]:
        """The stages a batch carries: those the model reads, or the trunk's last stage and those read below it."""
        if self.until_stage is None:
            return list(self.backbone.out_indices)
        return sorted({self.until_stage, *(i for i in self.backbone.out_indices if i < self.until_stage)})

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.split.train, self.images.train_spec.count, train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.split.val, self.images.eval_spec.count, train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.split.test, self.images.eval_spec.count, train=False)


def labels(record, index: int) -> dict[str, torch.Tensor]:
    def label(value):
        return torch.tensor(-1 if value is None else int(value), dtype=torch.long)

    return {"score": torch.tensor(record.score, dtype=torch.float32), "index": torch.tensor(index, dtype=torch.long),
            "distortion_type": label(record.distortion_type), "distortion_level": label(record.distortion_level)}


def backbone_fingerprint(backbone: nn.Module, deepest: int) -> str:
    """A hash of the backbone's class, deepest stored stage and every weight of the stages up to it: a
    random-init backbone gets its own store per seed, a pretrained one a single store for every choice of
    stages up to the same depth (a trunk under trained stages shares the store of a backbone cut there)."""
    digest = hashlib.sha1(f"{type(backbone).__name__}:{getattr(backbone, 'name', '')}:{deepest}".encode())
    later = tuple(f"model.{prefix}" for prefix in backbone.tail_prefixes(deepest))
    for name, tensor in backbone.state_dict().items():
        if name.startswith(later):
            continue
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def use_feature_cache(images: IQADataModule, net: QualityModel, options) -> CachedFeatureDataModule:
    return CachedFeatureDataModule(images, net, **dict(options))

