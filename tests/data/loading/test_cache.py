"""The resized-image cache: built once, reused, resumed after an interrupted build, and giving exactly the
crops (and aligned depth) that decoding the files gives."""

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import biqa.data.loading.cache as cache_module
from biqa.data.datasets.records import DatasetRecords, ImageRecord, ScoreScale
from biqa.data.loading.cache import ResizedImageCache
from biqa.data.loading.crops import CropDataset, CropSpec, decode_resized, load_rgb
from biqa.data.loading.datamodule import IQADataModule


def photo(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Smooth content plus noise, so JPEG keeps detail that resizing and DCT scaling treat differently."""
    ys, xs = np.mgrid[0:height, 0:width]
    base = np.stack([np.sin(xs / 7.0), np.cos(ys / 5.0), np.sin((xs + ys) / 9.0)], axis=-1) * 90 + 128
    return np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)


@pytest.fixture
def images(tmp_path) -> list[ImageRecord]:
    rng = np.random.default_rng(0)
    records = []
    for i, (height, width) in enumerate([(96, 128), (120, 90), (80, 80), (100, 140), (64, 200), (90, 96)]):
        path = tmp_path / "images" / f"{i}.jpg"
        path.parent.mkdir(exist_ok=True)
        Image.fromarray(photo(rng, height, width)).save(path, quality=90)
        records.append(ImageRecord(path, i / 5, i / 5, path.name))
    return records


class CountingDecode:
    def __init__(self, fail_after: int | None = None) -> None:
        self.calls, self.fail_after = 0, fail_after

    def __call__(self, *args, **kwargs):
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise KeyboardInterrupt
        self.calls += 1
        return decode_resized(*args, **kwargs)


def cached_files(cache: ResizedImageCache) -> list[Path]:
    return sorted(cache.folder.rglob("*.npy"))


def test_built_once_then_reused(images, tmp_path, monkeypatch):
    decode = CountingDecode()
    monkeypatch.setattr(cache_module, "decode_resized", decode)
    cache = ResizedImageCache(tmp_path / "cache", resize=48)
    cache.prepare([r.path for r in images], num_workers=2)
    assert decode.calls == len(images) and len(cached_files(cache)) == len(images)
    cache.prepare([r.path for r in images], num_workers=2)
    for record in images:
        cache.load(record.path)
    assert decode.calls == len(images)
    assert (cache.folder / "settings.json").exists()
    assert not list(cache.folder.rglob("*.tmp"))


def test_interrupted_build_resumes_without_redoing_finished_images(images, tmp_path, monkeypatch):
    cache = ResizedImageCache(tmp_path / "cache", resize=48)
    monkeypatch.setattr(cache_module, "decode_resized", CountingDecode(fail_after=2))
    with pytest.raises(KeyboardInterrupt):
        cache.prepare([r.path for r in images], num_workers=1)
    assert len(cached_files(cache)) == 2
    decode = CountingDecode()
    monkeypatch.setattr(cache_module, "decode_resized", decode)
    cache.prepare([r.path for r in images], num_workers=1)
    assert decode.calls == len(images) - 2
    assert len(cached_files(cache)) == len(images)


def test_entry_is_what_the_loader_decodes_and_a_changed_file_gets_a_new_one(images, tmp_path):
    cache = ResizedImageCache(tmp_path / "cache", resize=48)
    path = images[0].path
    stored = cache.load(path)
    assert stored.dtype == np.uint8 and min(stored.shape[:2]) == 48
    np.testing.assert_array_equal(np.load(cache.path_for(path)), decode_resized(path, 48, True))
    old_entry = cache.path_for(path)
    Image.fromarray(np.zeros((60, 60, 3), np.uint8)).save(path)
    os.utime(path, ns=(1, 1))
    assert cache.path_for(path) != old_entry
    assert cache.load(path).shape == (48, 48, 3)


def test_jpeg_draft_decodes_large_photos_at_a_reduced_scale(tmp_path):
    path = tmp_path / "big.jpg"
    Image.fromarray(photo(np.random.default_rng(1), 400, 600)).save(path)
    assert load_rgb(path, draft_short_side=90).size == (150, 100)  # 1/4 scale: the last one >= 90
    assert load_rgb(path, draft_short_side=300).size == (600, 400)  # no 1/2 scale reaches 300
    drafted, full = decode_resized(path, 90, True), decode_resized(path, 90, False)
    assert drafted.shape == full.shape == (90, 135, 3)
    assert 0 < np.abs(drafted.astype(int) - full).mean() < 10


class GradientDepth:
    """Depth maps with a zero column band, at the image's own size, as providers return them."""

    name = "test"

    def prepare(self, records) -> None:
        pass

    def load(self, record: ImageRecord) -> np.ndarray:
        width, height = Image.open(record.path).size
        depth = np.tile(np.linspace(0, 255, width).astype(np.uint8), (height, 1))
        depth[:, : width // 3] = 0
        return depth


@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("depth", [None, GradientDepth()])
def test_cached_crops_equal_decoded_crops(images, tmp_path, train, depth):
    spec = CropSpec(size=32, count=3, resize=48, hflip=True)
    indices = list(range(len(images)))
    plain = CropDataset(images, indices, spec, train, depth, seed=4)
    cached = CropDataset(images, indices, spec, train, depth, seed=4,
                         image_cache=ResizedImageCache.for_spec(tmp_path / "cache", spec))
    for position in indices:
        key = (position, 2) if train else position
        a, b = plain[key], cached[key]
        assert a.keys() == b.keys()
        for name in a:
            torch.testing.assert_close(a[name], b[name], rtol=0, atol=0)


def test_depth_channel_leaves_the_colours_alone(images):
    spec = CropSpec(size=32, count=4, resize=40)
    rgb_only = CropDataset(images, [0, 1], spec, train=False, seed=1)
    with_depth = CropDataset(images, [0, 1], spec, train=False, depth_provider=GradientDepth(), seed=1)
    for position in (0, 1):
        torch.testing.assert_close(rgb_only[position]["images"], with_depth[position]["images"], rtol=0, atol=0)
        depth = with_depth[position]["depth"]
        assert depth.shape == (4, 1, 32, 32) and depth.dtype == torch.uint8


def test_a_cache_for_other_resize_settings_is_refused(images, tmp_path):
    with pytest.raises(ValueError, match="other resize settings"):
        CropDataset(images, [0], CropSpec(resize=64), train=False,
                    image_cache=ResizedImageCache(tmp_path, resize=48))


def test_datamodule_builds_the_cache_before_training_and_serves_the_same_batches(images, tmp_path):
    records = DatasetRecords("toy", tmp_path, images, ScoreScale(0, 1))

    def datamodule(image_cache: bool) -> IQADataModule:
        dm = IQADataModule(lambda: records, split={"strategy": "all", "seed": 2},
                           train_crops={"size": 32, "count": 2, "resize": 48},
                           eval_crops={"size": 32, "count": 2, "resize": 48}, batch_size=3, num_workers=0,
                           image_cache=image_cache, image_cache_dir=str(tmp_path / "cache"))
        dm.prepare_data()
        dm.setup("fit")
        return dm

    cached = datamodule(True)
    assert len(list((tmp_path / "cache").rglob("*.npy"))) == len(images)
    plain = datamodule(False)
    for loader in ("train_dataloader", "test_dataloader"):
        for a, b in zip(getattr(plain, loader)(), getattr(cached, loader)(), strict=True):
            torch.testing.assert_close(a["images"], b["images"], rtol=0, atol=0)
            torch.testing.assert_close(a["index"], b["index"])


def test_fixed_height_width_resize_as_the_authors_and_its_own_cache_folder(images, tmp_path):
    # torchvision's Resize((512, 384)) order: (height, width), the aspect ratio not kept.
    spec = CropSpec(size=32, count=2, resize=[40, 30])
    assert spec.resize == (40, 30)
    for record in images:
        assert decode_resized(record.path, spec.resize, jpeg_draft=True).shape == (40, 30, 3)
    cache = ResizedImageCache.for_spec(tmp_path / "cache", spec)
    assert cache.folder.name == "40x30-draft" and cache.serves(spec)
    assert not cache.serves(CropSpec(size=32, resize=40))
    decoded = CropDataset(images, list(range(len(images))), spec, train=True)
    cached = CropDataset(images, list(range(len(images))), spec, train=True, image_cache=cache)
    torch.testing.assert_close(decoded[(3, 1)]["images"], cached[(3, 1)]["images"], rtol=0, atol=0)


def test_a_resize_that_is_neither_a_side_nor_height_width_is_refused():
    with pytest.raises(ValueError, match=r"crop resize \[1, 2, 3\] must be one short side or \[height, width\]"):
        CropSpec(resize=[1, 2, 3])
