"""How the datamodule composes training batches: K crops of each image, or the authors' independent crops."""

from collections import Counter

import numpy as np
import pytest
import torch
from PIL import Image

from biqa.data.datasets.records import DatasetRecords, ImageRecord, ScoreScale
from biqa.data.loading.datamodule import IQADataModule


@pytest.fixture
def records(tmp_path) -> DatasetRecords:
    rng = np.random.default_rng(0)
    images = []
    for i in range(6):
        path = tmp_path / f"{i}.png"
        Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(path)
        images.append(ImageRecord(path, i / 5, i / 5, path.name))
    return DatasetRecords("toy", tmp_path, images, ScoreScale(0, 1))


def datamodule(records: DatasetRecords, composition: str) -> IQADataModule:
    dm = IQADataModule(lambda: records, split={"strategy": "all", "seed": 1},
                       train_crops={"size": 16, "count": 4}, eval_crops={"size": 16, "count": 3},
                       batch_size=8, num_workers=0, batch_composition=composition)
    dm.setup("fit")
    return dm


def test_independent_crops_hold_every_image_k_times_per_epoch_one_crop_each(records):
    loader = datamodule(records, "independent_crops").train_dataloader()
    batches = list(loader)
    assert len(batches) == 6 * 4 // 8
    assert all(batch["images"].shape == (8, 1, 3, 16, 16) for batch in batches)
    seen = Counter(int(i) for batch in batches for i in batch["index"])
    assert seen == {i: 4 for i in range(6)}
    # The four draws of one image are independent crops, not one crop four times.
    crops = torch.cat([batch["images"][batch["index"] == 0] for batch in batches])
    assert len({crop.numpy().tobytes() for crop in crops}) == 4


def test_per_image_batches_and_evaluation_are_unchanged_by_the_option(records):
    per_image = datamodule(records, "per_image")
    assert next(iter(per_image.train_dataloader()))["images"].shape[:2] == (6, 4)
    independent = datamodule(records, "independent_crops")
    for a, b in zip(per_image.test_dataloader(), independent.test_dataloader(), strict=True):
        torch.testing.assert_close(a["images"], b["images"], rtol=0, atol=0)


def test_unknown_batch_composition_names_the_choices(records):
    with pytest.raises(ValueError, match="data.batch_composition='mixed' is unknown; choose one of per_image"):
        datamodule(records, "mixed")


def test_eval_loader_gives_any_rows_their_evaluation_views_in_order(records):
    dm = datamodule(records, "per_image")
    rows = [5, 0, 3]
    batch = next(iter(dm.eval_loader(rows)))
    assert batch["index"].tolist() == rows and batch["images"].shape == (3, 3, 3, 16, 16)
    evaluated = {int(i): crops for b in dm.test_dataloader() for i, crops in zip(b["index"], b["images"], strict=True)}
    for row, crops in zip(rows, batch["images"], strict=True):
        torch.testing.assert_close(crops, evaluated[row], rtol=0, atol=0)
