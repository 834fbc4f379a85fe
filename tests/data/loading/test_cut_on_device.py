"""`cut_on_device`: the loader hands over each decoded image once with its crop boxes, and the crops cut from
them where the batch lands are exactly the crops the workers cut otherwise (same seeds, flips, depth)."""

from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image

from biqa.data.datasets.records import DatasetRecords, ImageRecord, ScoreScale
from biqa.data.loading.crops import (
    CropDataset,
    CropSpec,
    _copy_crops,
    _gather_crops,
    collate_pixels,
    cut_crops,
)
from biqa.data.loading.datamodule import IQADataModule
from biqa.lit.losses import ScoreLoss
from biqa.lit.regression import QualityRegressor
from biqa.models.base import QualityModel, QualityOutput

SIZES = [(96, 128), (120, 90), (80, 80), (100, 140), (64, 200), (90, 96)]  # several aspect ratios


@pytest.fixture
def images(tmp_path) -> list[ImageRecord]:
    rng = np.random.default_rng(0)
    records = []
    for i, (height, width) in enumerate(SIZES):
        path = tmp_path / f"{i}.png"
        Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(path)
        records.append(ImageRecord(path, i / 5, i / 5, path.name, distortion_type=i % 2))
    return records


class RampDepth:
    """A depth map that differs along both axes, so a misaligned or unflipped depth crop shows."""

    def prepare(self, records) -> None:
        pass

    def load(self, record: ImageRecord) -> np.ndarray:
        width, height = Image.open(record.path).size
        ys, xs = np.mgrid[0:height, 0:width]
        return ((3 * xs + 7 * ys) % 256).astype(np.uint8)


def host_crops(item: dict) -> torch.Tensor:
    return torch.cat([item["images"], item["depth"]], dim=1) if "depth" in item else item["images"]


@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("depth", [None, RampDepth()])
def test_boxes_cut_the_host_paths_crops(images, train, depth):
    spec = CropSpec(size=32, count=6, hflip=True)
    indices = list(range(len(images)))
    host = CropDataset(images, indices, spec, train, depth, seed=3)
    device = CropDataset(images, indices, replace(spec, cut_on_device=True), train, depth, seed=3)
    flips = 0
    for position in indices:
        key = (position, 2) if train else position
        expected, item = host[key], device[key]
        channels = 3 if depth is None else 4
        assert item["pixels"].shape == (channels, *SIZES[position]) and item["pixels"].dtype == torch.uint8
        assert item["boxes"].shape == (6, 3)
        crops = cut_crops(item["pixels"][None], item["boxes"][None], item["crop_size"])[0]
        torch.testing.assert_close(crops, host_crops(expected), rtol=0, atol=0)
        for name in ("score", "index", "distortion_type", "distortion_level"):
            torch.testing.assert_close(item[name], expected[name], rtol=0, atol=0)
        flips += int(item["boxes"][:, 2].sum())
    assert (flips > 0) == train  # flips in training only, and this test sees some


def test_collate_pads_images_of_any_size_and_the_crops_survive(images):
    spec = CropSpec(size=32, count=4, hflip=True, cut_on_device=True)
    dataset = CropDataset(images, list(range(len(images))), spec, train=True, depth_provider=RampDepth())
    items = [dataset[position] for position in range(len(images))]
    batch = collate_pixels(items)
    height, width = max(h for h, _ in SIZES), max(w for _, w in SIZES)
    assert batch["pixels"].shape == (len(images), 4, height, width) and batch["crop_size"] == 32
    for padded, item in zip(batch["pixels"], items, strict=True):
        h, w = item["pixels"].shape[1:]
        torch.testing.assert_close(padded[:, :h, :w], item["pixels"], rtol=0, atol=0)
        assert not padded[:, h:].any() and not padded[:, :, w:].any()
    torch.testing.assert_close(batch["boxes"], torch.stack([item["boxes"] for item in items]))
    torch.testing.assert_close(batch["score"], torch.stack([item["score"] for item in items]))
    expected = torch.stack([cut_crops(i["pixels"][None], i["boxes"][None], 32)[0] for i in items])
    torch.testing.assert_close(cut_crops(batch["pixels"], batch["boxes"], 32), expected, rtol=0, atol=0)


@pytest.mark.parametrize("channels", [3, 4])
def test_the_accelerator_gather_cuts_what_the_cpu_copies_cut(channels):
    rng = torch.Generator().manual_seed(0)
    pixels = torch.randint(0, 256, (3, channels, 50, 70), dtype=torch.uint8, generator=rng)
    size = 20
    boxes = torch.stack([torch.randint(0, 50 - size + 1, (3, 9), generator=rng),
                         torch.randint(0, 70 - size + 1, (3, 9), generator=rng),
                         torch.randint(0, 2, (3, 9), generator=rng)], dim=-1)
    copied = _copy_crops(pixels, boxes, size, None)
    assert copied.shape == (3, 9, channels, size, size)
    torch.testing.assert_close(_gather_crops(pixels, boxes, size), copied, rtol=0, atol=0)
    top, left, flip = boxes[1, 4].tolist()
    window = pixels[1, :, top:top + size, left:left + size]
    torch.testing.assert_close(copied[1, 4], window.flip(-1) if flip else window, rtol=0, atol=0)
    into = torch.empty(3, 9, channels, size, size)
    torch.testing.assert_close(cut_crops(pixels, boxes, size, out=into), copied.float(), rtol=0, atol=0)


class MeanPixel(QualityModel):
    def forward(self, images, depth=None):
        return QualityOutput(score=images.mean(dim=(1, 2, 3)))

    def decoder_parameters(self):
        return iter(())


@pytest.mark.parametrize("depth", [None, RampDepth()])
def test_the_modules_batch_after_transfer_is_the_host_paths(images, tmp_path, depth):
    records = DatasetRecords("toy", tmp_path, images, ScoreScale(0, 1))
    module = QualityRegressor(MeanPixel(), {"score": ScoreLoss()})

    def datamodule(cut_on_device: bool) -> IQADataModule:
        crops = {"size": 32, "count": 3, "resize": 48, "cut_on_device": cut_on_device}
        dm = IQADataModule(lambda: records, split={"strategy": "all", "seed": 1}, train_crops=crops,
                           eval_crops=crops, batch_size=4, num_workers=1, persistent_workers=False, depth=depth)
        dm.prepare_data()
        dm.setup("fit")
        return dm

    host, device = datamodule(False), datamodule(True)
    for loader in ("train_dataloader", "test_dataloader"):
        for a, b in zip(getattr(host, loader)(), getattr(device, loader)(), strict=True):
            assert "pixels" in b
            a, b = module.on_after_batch_transfer(a, 0), module.on_after_batch_transfer(b, 0)
            assert list(a) == list(b)
            for name in a:
                torch.testing.assert_close(b[name], a[name], rtol=0, atol=0)
            assert b["images"].is_contiguous() and b["images"].shape[2] == 3
