"""One LightningDataModule over any dataset reader: records -> validation -> split -> K-crop loaders."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader

from biqa.data.crops import CropDataset, CropSpec
from biqa.data.records import DatasetRecords
from biqa.data.resumable import EpochShuffle, ResumableLoader, SkippingBatchSampler
from biqa.data.splits import Split, make_split

log = logging.getLogger(__name__)


class IQADataModule(L.LightningDataModule):
    def __init__(
        self,
        dataset: Callable[[], DatasetRecords],
        split: dict[str, Any] | None = None,
        train_crops: dict[str, Any] | None = None,
        eval_crops: dict[str, Any] | None = None,
        batch_size: int = 16,
        eval_batch_size: int | None = None,
        num_workers: int = 2,
        pin_memory: bool = True,
        persistent_workers: bool = True,
        depth: Any = None,
        validation: Callable[[DatasetRecords], DatasetRecords] | None = None,
        run_dir: str | None = None,
    ) -> None:
        super().__init__()
        self.read_dataset = dataset
        self.split_args = dict(split or {})
        self.train_spec = CropSpec(**{"hflip": True, **dict(train_crops or {})})
        self.eval_spec = CropSpec(**dict(eval_crops or {}))
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.persistent_workers = persistent_workers and num_workers > 0
        self.depth_provider = depth
        self.validate = validation
        self.run_dir = Path(run_dir) if run_dir else None
        self.records: DatasetRecords | None = None
        self.split: Split | None = None

    def prepare_data(self) -> None:
        """Builds on-disk artefacts once, on one process (synthetic images, depth maps); `setup` reuses them."""
        records = self.load_records()
        if self.depth_provider is not None:
            self.depth_provider.prepare(records.records)

    def load_records(self) -> DatasetRecords:
        if self.records is None:
            records = self.read_dataset()
            if self.validate is not None:
                records = self.validate(records)
            self.records = records
        return self.records

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
            self.split.save(self.run_dir / "split.json", records)

    @property
    def num_distortion_types(self) -> int:
        return len(self.load_records().distortion_types or [])

    def _loader(self, indices: list[int], spec: CropSpec, train: bool) -> DataLoader:
        seed = int(self.split_args.get("seed", 0))
        dataset = CropDataset(self.records.records, indices, spec, train, self.depth_provider, seed=seed)
        common = dict(num_workers=self.num_workers, pin_memory=self.pin_memory and torch.cuda.is_available(),
                      persistent_workers=self.persistent_workers)
        if not train:
            return DataLoader(dataset, batch_size=self.eval_batch_size, shuffle=False, **common)
        # The order and the crops are functions of (seed, epoch), so that a run resumed from a mid-epoch
        # checkpoint sees what the interrupted run would have seen (biqa.data.resumable). Lightning sets
        # the epoch before each pass; the loader starts no worker before its first batch is asked for.
        batches = SkippingBatchSampler(EpochShuffle(len(indices), seed), self.batch_size,
                                       drop_last=len(indices) > self.batch_size)
        return ResumableLoader(dataset, batch_sampler=batches, **common)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.split.train, self.train_spec, train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.split.val, self.eval_spec, train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.split.test, self.eval_spec, train=False)
