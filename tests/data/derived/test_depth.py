import os
from pathlib import Path

import numpy as np
import pytest
from hydra.utils import instantiate
from PIL import Image

from biqa.data.datasets.records import ImageRecord
from biqa.data.derived.depth import (
    DepthAnythingProvider,
    FolderDepthProvider,
    NotLearnedDepthFallback,
    depth_anything_input_size,
)

SIZES = [(40, 30), (30, 40), (40, 30), (24, 24), (36, 28)]  # (width, height)


def write_images(folder: Path, sizes=SIZES) -> list[ImageRecord]:
    """Images with a sharp, textured lower half and a smooth upper half."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    records = []
    for index, (width, height) in enumerate(sizes):
        pixels = np.full((height, width, 3), 120, dtype=np.uint8)
        pixels[height // 2 :] = rng.integers(0, 256, (height - height // 2, width, 3), dtype=np.uint8)
        path = folder / f"image_{index}.png"
        Image.fromarray(pixels).save(path)
        records.append(ImageRecord(path=path, score=0.5, raw_score=50.0, image_id=f"set/{path.name}"))
    return records


def count_estimates(provider) -> list[int]:
    """Wraps `provider.estimate` to record how many maps each call computes."""
    calls: list[int] = []
    estimate = provider.estimate

    def counting(images):
        calls.append(len(images))
        return estimate(images)

    provider.estimate = counting
    return calls


def assert_depth_like(depth: np.ndarray, record: ImageRecord) -> None:
    width, height = Image.open(record.path).size
    assert depth.dtype == np.uint8 and depth.shape == (height, width)
    assert depth.min() == 0 and depth.max() == 255


def test_fallback_is_deterministic_full_range_and_says_it_is_not_depth(tmp_path):
    records = write_images(tmp_path / "images")
    first = NotLearnedDepthFallback(cache_dir=tmp_path / "cache_a", batch_size=2)
    second = NotLearnedDepthFallback(cache_dir=tmp_path / "cache_b", batch_size=3)
    first.prepare(records)
    second.prepare(records)
    for record in records:
        depth = first.load(record)
        assert_depth_like(depth, record)
        np.testing.assert_array_equal(depth, second.load(record))
    # The textured (sharp) lower half reads as nearer than the flat upper half.
    depth = first.load(records[0]).astype(float)
    assert depth[20:].mean() > depth[:10].mean() + 50
    assert "not_learned" in first.name and "not" in type(first).__name__.lower()


def test_second_prepare_computes_nothing(tmp_path):
    records = write_images(tmp_path / "images")
    provider = NotLearnedDepthFallback(cache_dir=tmp_path / "cache", batch_size=2)
    calls = count_estimates(provider)
    provider.prepare(records + records[:2])  # duplicates are computed once
    assert sum(calls) == len(records)
    again = NotLearnedDepthFallback(cache_dir=tmp_path / "cache", batch_size=2)
    again_calls = count_estimates(again)
    again.prepare(records)
    assert again_calls == []
    np.testing.assert_array_equal(again.load(records[3]), provider.load(records[3]))


def test_interrupted_prepare_resumes_without_redoing_finished_maps(tmp_path):
    records = write_images(tmp_path / "images")
    provider = NotLearnedDepthFallback(cache_dir=tmp_path / "cache", batch_size=1)
    estimate, done = provider.estimate, []

    def interrupted_after_two(images):
        if len(done) == 2:
            raise KeyboardInterrupt
        done.append(images)
        return estimate(images)

    provider.estimate = interrupted_after_two
    with pytest.raises(KeyboardInterrupt):
        provider.prepare(records)
    resumed = NotLearnedDepthFallback(cache_dir=tmp_path / "cache", batch_size=1)
    calls = count_estimates(resumed)
    resumed.prepare(records)
    assert sum(calls) == len(records) - 2
    assert not list((tmp_path / "cache").rglob("*.tmp"))
    for record in records:
        assert_depth_like(resumed.load(record), record)


def test_cache_is_keyed_by_settings_and_by_the_image_file(tmp_path):
    records = write_images(tmp_path / "images")
    provider = NotLearnedDepthFallback(cache_dir=tmp_path / "cache")
    provider.prepare(records)
    other_settings = NotLearnedDepthFallback(cache_dir=tmp_path / "cache", vertical_prior=0.0)
    assert other_settings.cache.folder != provider.cache.folder
    other_calls = count_estimates(other_settings)
    other_settings.prepare(records)
    assert sum(other_calls) == len(records)

    changed = records[1]
    Image.fromarray(np.zeros((40, 30, 3), dtype=np.uint8)).save(changed.path)
    os.utime(changed.path, ns=(1, 1))
    with pytest.raises(FileNotFoundError, match="prepare"):
        provider.load(changed)
    calls = count_estimates(provider)
    provider.prepare(records)
    assert calls == [1]


def test_load_before_prepare_says_what_to_do(tmp_path):
    records = write_images(tmp_path / "images", SIZES[:1])
    with pytest.raises(FileNotFoundError, match=r"call prepare\(records\) first"):
        NotLearnedDepthFallback(cache_dir=tmp_path / "cache").load(records[0])


def test_folder_provider_lists_the_missing_maps(tmp_path):
    records = write_images(tmp_path / "images")
    maps = tmp_path / "maps"
    maps.mkdir()
    Image.fromarray(np.zeros((30, 40), dtype=np.uint8)).save(maps / "image_0.png")
    provider = FolderDepthProvider(maps, pattern="{stem}.png")
    with pytest.raises(FileNotFoundError) as error:
        provider.prepare(records)
    message = str(error.value)
    assert "4 of 5 depth maps are missing" in message
    assert all(f"image_{i}.png" in message for i in range(1, 5)) and "image_0.png" not in message


def test_folder_provider_reads_png16_and_npy_resizes_and_normalises(tmp_path):
    records = write_images(tmp_path / "images", SIZES[:2])
    maps = tmp_path / "maps" / "set"
    maps.mkdir(parents=True)
    ramp = np.tile(np.linspace(1000, 9000, 20), (15, 1))  # half the image's size, increasing to the right
    Image.fromarray(ramp.astype(np.uint16)).save(maps / "image_0_depth.png")
    np.save(maps / "image_1_depth.npy", ramp.T.astype(np.float32) / 100)
    for suffix, record in zip((".png", ".npy"), records, strict=True):
        provider = FolderDepthProvider(tmp_path / "maps", pattern="{image_id_stem}_depth" + suffix)
        provider.prepare([record])
        depth = provider.load(record)
        assert_depth_like(depth, record)
        inverted = FolderDepthProvider(tmp_path / "maps", pattern="{image_id_stem}_depth" + suffix, invert=True)
        np.testing.assert_array_equal(inverted.load(record).astype(int), 255 - depth.astype(int))
    assert provider.name.startswith("folder:")


def test_depth_anything_input_size_follows_the_lower_bound_rule():
    assert depth_anything_input_size(384, 512) == (518, 686)
    assert depth_anything_input_size(1024, 768) == (686, 518)
    assert depth_anything_input_size(518, 518) == (518, 518)
    for height, width in [(500, 500), (1080, 1920), (300, 1000), (613, 491)]:
        out_height, out_width = depth_anything_input_size(height, width)
        assert out_height % 14 == 0 and out_width % 14 == 0
        assert min(out_height, out_width) >= 518 and min(out_height, out_width) < 518 + 14
        assert abs(out_width / out_height - width / height) < 0.03 * width / height


@pytest.fixture(scope="module")
def tiny_depth_anything(tmp_path_factory) -> Path:
    """A randomly initialised Depth Anything (tiny DINOv2 backbone) saved like a hub download."""
    import torch
    from transformers import (
        DepthAnythingConfig,
        DepthAnythingForDepthEstimation,
        Dinov2Config,
        DPTImageProcessor,
    )

    torch.manual_seed(0)
    backbone = Dinov2Config(hidden_size=16, num_hidden_layers=4, num_attention_heads=2, mlp_ratio=2,
                            image_size=28, patch_size=14, reshape_hidden_states=False,
                            out_features=["stage1", "stage2", "stage3", "stage4"])
    config = DepthAnythingConfig(backbone_config=backbone, reassemble_hidden_size=16,
                                 neck_hidden_sizes=[8, 8, 16, 16], fusion_hidden_size=8, head_hidden_size=4)
    folder = tmp_path_factory.mktemp("tiny_depth_anything")
    DepthAnythingForDepthEstimation(config).save_pretrained(folder)
    DPTImageProcessor().save_pretrained(folder)
    return folder


def test_depth_anything_from_a_local_folder_end_to_end(tmp_path, tiny_depth_anything):
    records = write_images(tmp_path / "images")
    settings = dict(model=str(tiny_depth_anything), cache_dir=tmp_path / "cache", device="cpu", batch_size=2,
                    min_short_side=28, local_files_only=True)
    provider = DepthAnythingProvider(**settings)
    calls = count_estimates(provider)
    provider.prepare(records)
    assert sum(calls) == len(records)
    for record in records:
        assert_depth_like(provider.load(record), record)
    assert provider.name == f"depth_anything:{tiny_depth_anything}"
    assert provider._loaded is None  # released after prepare: no GPU memory held, nothing heavy to pickle

    warm = DepthAnythingProvider(**settings)

    def no_model():
        raise AssertionError("a warm cache must not need the model")

    warm._load_model = no_model
    warm.prepare(records)
    np.testing.assert_array_equal(warm.load(records[2]), provider.load(records[2]))


def test_depth_anything_offline_error_names_the_ways_out(tmp_path):
    records = write_images(tmp_path / "images", SIZES[:1])
    provider = DepthAnythingProvider("no-such-org/no-such-depth-model", cache_dir=tmp_path / "cache",
                                     device="cpu", local_files_only=True)
    with pytest.raises(RuntimeError) as error:
        provider.prepare(records)
    message = str(error.value)
    assert "unreachable" in message and "data.depth.model=DIR" in message
    assert "data/depth=folder" in message and "data/depth=not_learned_blur_proxy" in message


@pytest.mark.parametrize("choice, kind", [
    ("none", type(None)),
    ("depth_anything", DepthAnythingProvider),
    ("folder", FolderDepthProvider),
    ("not_learned_blur_proxy", NotLearnedDepthFallback),
])
def test_every_depth_config_instantiates(choice, kind, compose_config, tmp_path):
    overrides = [f"data/depth={choice}"] + ([f"data.depth.root={tmp_path}"] if choice == "folder" else [])
    cfg = compose_config("train", overrides)
    provider = instantiate(cfg.data.depth)
    assert isinstance(provider, kind)
    if hasattr(provider, "cache"):
        assert provider.cache.folder.parent == Path(cfg.paths.cache_dir) / "depth"
