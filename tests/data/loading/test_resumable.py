"""The training loader's order is a function of (seed, epoch), and its position survives a restart."""

from __future__ import annotations

import pytest
from torch.utils.data import Dataset

from biqa.data.loading.resumable import EpochShuffle, ResumableLoader, SkippingBatchSampler


class Keys(Dataset):
    """Returns the (position, epoch) key it is asked for."""

    def __init__(self, size: int) -> None:
        self.size = size

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, key: tuple[int, int]) -> tuple[int, int]:
        return key


def as_list(keys: list[tuple[int, int]]) -> list[tuple[int, int]]:
    return keys


def loader(size: int = 10, batch_size: int = 3, epoch: int = 0, num_workers: int = 0,
           persistent_workers: bool = False) -> ResumableLoader:
    batches = SkippingBatchSampler(EpochShuffle(size, seed=7, epoch=epoch), batch_size, drop_last=True)
    return ResumableLoader(Keys(size), batch_sampler=batches, num_workers=num_workers, collate_fn=as_list,
                           persistent_workers=persistent_workers)


def test_order_is_a_function_of_seed_and_epoch():
    assert list(EpochShuffle(10, seed=7, epoch=2)) == list(EpochShuffle(10, seed=7, epoch=2))
    assert list(EpochShuffle(10, seed=7, epoch=2)) != list(EpochShuffle(10, seed=7, epoch=3))
    keys = list(EpochShuffle(10, seed=7, epoch=2))
    assert sorted(position for position, _ in keys) == list(range(10)) and {e for _, e in keys} == {2}


@pytest.mark.parametrize(("num_workers", "persistent_workers"), [(0, False), (2, False), (2, True)])
def test_a_restarted_loader_serves_the_batches_the_interrupted_one_had_not_reached(num_workers, persistent_workers):
    uninterrupted = list(loader(epoch=4))
    interrupted = loader(epoch=4, num_workers=num_workers, persistent_workers=persistent_workers)
    batches = iter(interrupted)
    assert [next(batches), next(batches)] == uninterrupted[:2]
    state = interrupted.state_dict()
    assert state == {"epoch": 4, "batches_served": 2}  # workers load ahead; only what was handed out counts

    # A fresh run builds its loader at epoch 0 until the state arrives. With workers, torch begins the batch
    # sampler twice per pass: the skip must hold for both.
    restarted = loader(epoch=0, num_workers=num_workers, persistent_workers=persistent_workers)
    restarted.load_state_dict(state)
    assert list(restarted) == uninterrupted[2:]
    assert restarted.state_dict() == {"epoch": 4, "batches_served": 3}
    assert list(restarted) == uninterrupted  # the skip applies to the resumed pass only


def test_a_second_restart_in_the_same_epoch_counts_from_the_epoch_start():
    uninterrupted = list(loader(epoch=1))
    first = loader()
    first.load_state_dict({"epoch": 1, "batches_served": 1})
    next(iter(first))
    second = loader()
    second.load_state_dict(first.state_dict())
    assert first.state_dict() == {"epoch": 1, "batches_served": 2}
    assert list(second) == uninterrupted[2:]


def test_state_saved_after_the_last_batch_resumes_at_the_next_epoch():
    restarted = loader()
    restarted.load_state_dict({"epoch": 1, "batches_served": len(restarted)})
    assert list(restarted) == list(loader(epoch=2))
