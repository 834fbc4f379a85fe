"""One LightningDataModule over any dataset reader: records -> validation -> split -> K-crop loaders."""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader

from biqa.data.datasets.cross_dataset import check_split_strategy, train_on_a_test_on_b
from biqa.data.datasets.records import DatasetRecords
from biqa.data.datasets.splits import Split, make_split
from biqa.data.loading.cache import ResizedImageCache
from biqa.data.loading.crops import CropDataset, CropSpec, collate_pixels
from biqa.data.loading.resumable import EpochShuffle, ResumableLoader, SkippingBatchSampler
from biqa.data.loading.workers import SignalSafeLoader
from biqa.run_folder import SPLIT_FILE

log = logging.getLogger(__name__)

BATCH_COMPOSITIONS = ("per_image", "independent_crops")


class IQADataModule(L.LightningDataModule):
    def __init__(
        self,
        dataset: Callable[[], DatasetRecords],
        split: dict[str, Any] | None = None,
        train_crops: dict[str, Any] | None = None,
        eval_crops: dict[str, Any] | None = None,
        batch_size: int = 16,
        eval_batch_size: int | None = None,
        num_workers: int | str = "auto",
        pin_memory: bool = True,
        persistent_workers: bool = True,
        depth: Any = None,
        validation: Callable[[DatasetRecords], DatasetRecords] | None = None,
        run_dir: str | None = None,
        test_dataset: Callable[[], DatasetRecords] | None = None,
        image_cache: bool = False,
        image_cache_dir: str | None = None,
        batch_composition: str = "per_image",
    ) -> None:
        """`test_dataset`: train on all of `dataset`, test on all of this one (`biqa.data.datasets.cross_dataset`).
        `image_cache`: read images decoded and resized once from `image_cache_dir` (`biqa.data.loading.cache`).
        `num_workers`: "auto" is one loader process per usable core, at most 8.
        `batch_composition`: how a training batch is made. "per_image": `batch_size` images with
        `train_crops.count` crops each, cut from one decode. "independent_crops": `batch_size` single crops,
        each of an image drawn from a shuffled list that holds every training image `train_crops.count` times
        (the Life-IQA, DEIQT and HyperIQA code): the same crops per epoch, spread over more batches, each
        crop a decode (or an image-cache read) of its own."""
        super().__init__()
        self.read_dataset = dataset
        self.read_test_dataset = test_dataset
        self.split_args = dict(split or {})
        self.train_spec = CropSpec(**{"hflip": True, **dict(train_crops or {})})
        self.eval_spec = CropSpec(**dict(eval_crops or {}))
        if batch_composition not in BATCH_COMPOSITIONS:
            raise ValueError(f"data.batch_composition={batch_composition!r} is unknown; choose one of "
                             f"{', '.join(BATCH_COMPOSITIONS)}")
        self.batch_composition = batch_composition
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers = default_num_workers() if num_workers == "auto" else int(num_workers)
        self.pin_memory = pin_memory
        self.persistent_workers = persistent_workers and self.num_workers > 0
        self.depth_provider = depth
        self.validate = validation
        self.run_dir = Path(run_dir) if run_dir else None
        if image_cache and not image_cache_dir:
            raise ValueError("data.image_cache=true needs data.image_cache_dir")
        self.image_caches = {spec: ResizedImageCache.for_spec(image_cache_dir, spec)
                             for spec in (self.train_spec, self.eval_spec)} if image_cache else {}
        if self.read_test_dataset is not None:
            check_split_strategy(self.split_args.get("strategy", "random"))
        self.records: DatasetRecords | None = None
        self.split: Split | None = None

    def prepare_data(self) -> None:
        """Builds on-disk artefacts once, on one process (synthetic images, depth maps); `setup` reuses them."""
        records = self.load_records()
        if self.depth_provider is not None:
            self.depth_provider.prepare(records.records)
        paths = [record.path for record in records.records]
        for cache in {cache.folder: cache for cache in self.image_caches.values()}.values():
            cache.prepare(paths, self.num_workers)

    def load_records(self) -> DatasetRecords:
        if self.records is None:
            records = self._read_and_validate(self.read_dataset)
            if self.read_test_dataset is not None:
                records = train_on_a_test_on_b(records, self._read_and_validate(self.read_test_dataset))
            self.records = records
        return self.records

    def _read_and_validate(self, read: Callable[[], DatasetRecords]) -> DatasetRecords:
        records = read()
        return self.validate(records) if self.validate is not None else records

    def setup(self, stage: str | None = None) -> None:
        if self.split is not None:
            return
        records = self.load_records()
        if self.depth_provider is not None:
            self.depth_provider.prepare(records.records)
        self.split = make_split(records, **self.split_args)
        log.info("split of %s: %d train / %d val / %d test images", records.name,
                 len(self.split.train), len(self.split.val), len(self.split.test))
        if self.run_dir is not None:
            self.split.save(self.run_dir / SPLIT_FILE, records)

    @property
    def num_distortion_types(self) -> int:
        return len(self.load_records().distortion_types or [])

    def _loader(self, indices: list[int], spec: CropSpec, train: bool) -> DataLoader:
        seed = int(self.split_args.get("seed", 0))
        cache = self.image_caches.get(spec)
        draws = 1
        if train and self.batch_composition == "independent_crops":
            spec, draws = dataclasses.replace(spec, count=1), spec.count
        dataset = CropDataset(self.records.records, indices, spec, train, self.depth_provider, seed=seed,
                              image_cache=cache, draws_per_image=draws)
        # Each pass draws its workers' base seed from the loader's own generator: from the process's, every
        # pass would move on the generator that dropout draws from, and a resumed run, which starts fewer
        # passes than an uninterrupted one, would draw other dropout masks.
        common = dict(num_workers=self.num_workers, pin_memory=self.pin_memory and torch.cuda.is_available(),
                      persistent_workers=self.persistent_workers, generator=torch.Generator().manual_seed(seed),
                      collate_fn=collate_pixels if spec.cut_on_device else None)
        if not train:
            return SignalSafeLoader(dataset, batch_size=self.eval_batch_size, shuffle=False, **common)
        # The order and the crops are functions of (seed, epoch), so that a run resumed from a mid-epoch
        # checkpoint sees what the interrupted run would have seen (biqa.data.loading.resumable). Lightning sets
        # the epoch before each pass; the loader starts no worker before its first batch is asked for.
        batches = SkippingBatchSampler(EpochShuffle(len(dataset), seed), self.batch_size,
                                       drop_last=len(dataset) > self.batch_size)
        return ResumableLoader(dataset, batch_sampler=batches, **common)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.split.train, self.train_spec, train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.split.val, self.eval_spec, train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.split.test, self.eval_spec, train=False)

    def eval_loader(self, indices: list[int]) -> DataLoader:
        """The evaluation views of any rows of the dataset, in order (a script's feature extraction over every
        photo, or its check of a fitted model), whatever the split."""
        return self._loader(indices, self.eval_spec, train=False)


def default_num_workers() -> int:
    """One loader process per core this process may use, at most 8 (more rarely pays for its memory)."""
    return min(8, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
