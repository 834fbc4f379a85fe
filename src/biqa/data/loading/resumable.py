"""A training loader that a run killed mid-epoch resumes exactly where it stopped.

Lightning saves the `state_dict` of every training loader that has one in its checkpoints and hands it back
to `load_state_dict` when a run resumes from them. Together with an order that is a function of (seed, epoch)
alone, that is all a resumed run needs to see the batches the interrupted run had not reached, in the
same order and with the same crops, instead of starting the epoch again with a fresh shuffle.
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import islice
from typing import Any

import numpy as np
from torch.utils.data import BatchSampler, Sampler

from biqa.data.loading.workers import SignalSafeLoader


class EpochShuffle(Sampler[tuple[int, int]]):
    """A permutation of `size` positions drawn from (seed, epoch), yielded as (position, epoch) keys so that
    the dataset can seed each visit's random crops from the epoch too (see `CropDataset`)."""

    def __init__(self, size: int, seed: int, epoch: int = 0) -> None:
        self.size, self.seed, self.epoch = size, seed, epoch

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.size

    def __iter__(self) -> Iterator[tuple[int, int]]:
        order = np.random.default_rng((self.seed, self.epoch)).permutation(self.size)
        return ((int(position), self.epoch) for position in order)


class SkippingBatchSampler(BatchSampler):
    """Batches of the wrapped sampler; every pass begun while `skip` is set starts `skip` batches in, without
    loading them. `ResumableLoader` sets it for the one pass that resumes an epoch: a loader with workers
    begins its sampler twice when it starts a pass (torch's multi-process iterator does), so the skip
    cannot be spent by the first pass that asks for it."""

    def __init__(self, sampler: Sampler, batch_size: int, drop_last: bool) -> None:
        super().__init__(sampler, batch_size, drop_last)
        self.skip = 0

    def __iter__(self) -> Iterator[list]:
        return islice(super().__iter__(), self.skip, None)


class ResumableLoader(SignalSafeLoader):
    """A DataLoader (built with a `SkippingBatchSampler`) whose state is its epoch and the number of batches
    it has handed to the training loop in that epoch: counted here, in the main process, because workers
    load batches ahead of the loop."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not isinstance(self.batch_sampler, SkippingBatchSampler):
            raise TypeError("ResumableLoader needs batch_sampler=SkippingBatchSampler(...)")
        # Under DDP, Lightning shards `loader.sampler`: a DataLoader given a batch sampler reports a plain
        # SequentialSampler there, which Lightning would replace by a DistributedSampler over the dataset, and the
        # (position, epoch) keys, and with them each epoch's fresh crops, would be lost. Reporting the batch
        # sampler's own sampler makes Lightning wrap it instead (DistributedSamplerWrapper, epoch forwarded).
        object.__setattr__(self, "sampler", self.batch_sampler.sampler)
        self.batches_served = 0

    def __iter__(self) -> Iterator[Any]:
        # A generator: nothing (no worker, no index) is drawn before the first batch is asked for, by which
        # time Lightning has set the sampler's epoch and handed back the saved state.
        self.batches_served = self.batch_sampler.skip
        try:
            batches = super().__iter__()  # every sampler pass this begins starts at the saved position
        finally:
            self.batch_sampler.skip = 0  # the next epoch starts at its beginning
        for batch in batches:
            self.batches_served += 1
            yield batch

    def state_dict(self) -> dict[str, int | None]:
        return {"epoch": getattr(self.batch_sampler.sampler, "epoch", None), "batches_served": self.batches_served}

    def load_state_dict(self, state: dict[str, int | None]) -> None:
        epoch, served = state.get("epoch"), int(state.get("batches_served", 0))
        if served >= len(self):
            # Saved after the epoch's last batch: the run resumes at the start of the next epoch.
            epoch, served = (None if epoch is None else epoch + 1), 0
        sampler = self.batch_sampler.sampler
        if epoch is not None and hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)
        self.batch_sampler.skip = served
