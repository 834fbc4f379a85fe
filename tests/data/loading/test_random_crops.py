"""`random_crops` writes channel-first crops straight from the decoded image: the same crops, flips and
random draws as slicing each crop out, flipping it and transposing it one by one."""

import numpy as np
import pytest

from biqa.data.loading.crops import random_crops


def one_by_one(pixels: np.ndarray, size: int, count: int, rng: np.random.Generator, hflip: bool) -> np.ndarray:
    height, width = pixels.shape[:2]
    tops, lefts = rng.integers(0, height - size + 1, count), rng.integers(0, width - size + 1, count)
    flips = rng.random(count) < 0.5 if hflip else np.zeros(count, dtype=bool)
    crops = []
    for top, left, flip in zip(tops, lefts, flips, strict=True):
        crop = pixels[top:top + size, left:left + size]
        crops.append((crop[:, ::-1] if flip else crop).transpose(2, 0, 1))
    return np.stack(crops)


@pytest.mark.parametrize("channels", [3, 4])
@pytest.mark.parametrize("count", [1, 2, 30])  # 30 crops cover more pixels than the image: transposed once
@pytest.mark.parametrize("hflip", [False, True])
def test_crops_match_slicing_each_crop(channels, count, hflip):
    pixels = np.random.default_rng(0).integers(0, 256, (40, 57, channels), dtype=np.uint8)
    got = random_crops(pixels, 16, count, np.random.default_rng(7), hflip)
    expected = one_by_one(pixels, 16, count, np.random.default_rng(7), hflip)
    assert got.shape == (count, channels, 16, 16) and got.flags.c_contiguous
    np.testing.assert_array_equal(got, expected)
    if hflip and count == 30:
        assert not np.array_equal(got, one_by_one(pixels, 16, count, np.random.default_rng(7), False))
