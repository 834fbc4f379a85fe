from __future__ import annotations

import numpy as np
import pytest
from skimage.metrics import structural_similarity

from biqa.data.datasets.distortions import DISTORTION_NAMES, DISTORTIONS, LEVELS, distort, distortion_index
from biqa.data.datasets.synthetic import cut_references

# The label of a distortion is its index: this order is a contract with trained models and caches.
EXPECTED_ORDER = [
    "gaussian_blur",
    "motion_blur",
    "gaussian_noise",
    "impulse_noise",
    "jpeg",
    "jpeg2000",
    "contrast_decrease",
    "brighten",
    "darken",
    "desaturate",
    "colour_quantisation",
    "pixelate",
    "oversharpen",
    "chromatic_aberration",
]


@pytest.fixture(scope="module")
def references() -> list[np.ndarray]:
    return [reference.pixels for reference in cut_references(48, 3)]


def ssim(distorted: np.ndarray, reference: np.ndarray) -> float:
    return structural_similarity(
        distorted,
        reference,
        data_range=255,
        channel_axis=2,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
    )


def test_registry_order_is_stable():
    assert DISTORTION_NAMES == list(DISTORTIONS) == EXPECTED_ORDER
    assert [distortion_index(name) for name in DISTORTION_NAMES] == list(range(len(DISTORTION_NAMES)))


@pytest.mark.parametrize("name", DISTORTION_NAMES)
def test_every_level_changes_the_image_and_keeps_its_format(name, references):
    for reference in references:
        original = reference.copy()
        for level in range(1, LEVELS + 1):
            distorted = distort(reference, name, level, np.random.default_rng(0))
            assert distorted.dtype == np.uint8 and distorted.shape == reference.shape
            assert not np.array_equal(distorted, reference), f"{name} level {level} left the image unchanged"
        np.testing.assert_array_equal(reference, original)  # pure: the input is never written to


@pytest.mark.parametrize("name", DISTORTION_NAMES)
def test_strength_grows_with_level(name, references):
    # Mean over references and seeds: single images can plateau (a shift along a periodic texture).
    mean_ssim = [
        np.mean(
            [
                ssim(distort(ref, name, level, np.random.default_rng(seed)), ref)
                for ref in references
                for seed in (0, 1)
            ]
        )
        for level in range(1, LEVELS + 1)
    ]
    assert all(weaker > stronger for weaker, stronger in zip(mean_ssim, mean_ssim[1:], strict=False)), (
        mean_ssim
    )
    assert mean_ssim[0] < 0.99 and mean_ssim[-1] < 0.85, mean_ssim


@pytest.mark.parametrize("name", DISTORTION_NAMES)
def test_same_rng_state_gives_the_same_image_and_any_shape_works(name):
    image = (np.random.default_rng(3).random((37, 53, 3)) * 255).astype(np.uint8)
    first = distort(image, name, 3, np.random.default_rng(7))
    np.testing.assert_array_equal(first, distort(image, distortion_index(name), 3, np.random.default_rng(7)))
    assert first.shape == image.shape


def test_random_distortions_depend_on_the_rng(references):
    reference = references[0]
    for name in ("gaussian_noise", "impulse_noise", "motion_blur", "chromatic_aberration"):
        a = distort(reference, name, 3, np.random.default_rng(0))
        b = distort(reference, name, 3, np.random.default_rng(1))
        assert not np.array_equal(a, b), name


def test_bad_arguments_are_refused(references):
    reference = references[0]
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="level"):
        distort(reference, "jpeg", 0, rng)
    with pytest.raises(ValueError, match="level"):
        distort(reference, "jpeg", LEVELS + 1, rng)
    with pytest.raises(KeyError, match="unknown distortion"):
        distort(reference, "vignette", 1, rng)
    with pytest.raises(IndexError):
        distort(reference, len(DISTORTION_NAMES), 1, rng)
    with pytest.raises(ValueError, match="uint8"):
        distort(reference.astype(np.float32), "jpeg", 1, rng)
