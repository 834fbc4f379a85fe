"""Synthetic distortions: the embedded default dataset, BFRD's contrastive encoder and MFENet's type head.

Every distortion is a pure function `(image, level, rng) -> image` on uint8 HxWx3 RGB arrays, with `level`
in 1..5 and a stronger effect at every level. The order of `DISTORTIONS` is part of the contract: the
index of a name is its class label, so new distortions are appended, never inserted.

Strengths were calibrated so that, on the default 192 px references, the mean SSIM to the pristine image
falls level after level for every type, and most types span roughly 0.95 -> 0.4 (brightness and colour
changes keep more structure, so SSIM stays higher for them; that is how SSIM sees them, not a bug).
"""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
from numpy.typing import NDArray
from PIL import Image
from scipy import ndimage, signal

LEVELS = 5

Distortion = Callable[[NDArray[np.uint8], int, np.random.Generator], NDArray[np.uint8]]


def _strength(levels: tuple[float, ...], level: int) -> float:
    if not 1 <= level <= LEVELS:
        raise ValueError(f"distortion level must be in 1..{LEVELS}, got {level}")
    return levels[level - 1]


def _to_float(image: NDArray[np.uint8]) -> NDArray[np.float32]:
    return image.astype(np.float32) / 255.0


def _to_uint8(image: NDArray[np.floating]) -> NDArray[np.uint8]:
    return (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _luminance(image: NDArray[np.float32]) -> NDArray[np.float32]:
    return image @ np.array([0.299, 0.587, 0.114], dtype=np.float32)


def gaussian_blur(image: NDArray[np.uint8], level: int, rng: np.random.Generator) -> NDArray[np.uint8]:
    sigma = _strength((0.6, 1.0, 1.6, 2.5, 4.0), level)
    return _to_uint8(ndimage.gaussian_filter(_to_float(image), sigma=(sigma, sigma, 0), mode="reflect"))


def _line_kernel(length: int, angle: float) -> NDArray[np.float32]:
    """A normalised straight-line PSF of `length` pixels at `angle` radians (camera shake)."""
    size = length if length % 2 == 1 else length + 1
    centre = size // 2
    # Oversample the segment so every pixel it crosses gets weight, whatever the angle.
    t = np.linspace(-(length - 1) / 2, (length - 1) / 2, 4 * length)
    rows = np.clip(np.rint(centre - t * np.sin(angle)).astype(int), 0, size - 1)
    cols = np.clip(np.rint(centre + t * np.cos(angle)).astype(int), 0, size - 1)
    kernel = np.zeros((size, size), dtype=np.float32)
    np.add.at(kernel, (rows, cols), 1.0)
    return kernel / kernel.sum()


def motion_blur(image: NDArray[np.uint8], level: int, rng: np.random.Generator) -> NDArray[np.uint8]:
    length = int(_strength((3, 5, 8, 12, 17), level))
    kernel = _line_kernel(length, angle=rng.uniform(0.0, np.pi))
    pad = kernel.shape[0] // 2
    padded = np.pad(_to_float(image), ((pad, pad), (pad, pad), (0, 0)), mode="reflect")
    blurred = signal.fftconvolve(padded, kernel[:, :, None], mode="valid", axes=(0, 1))
    return _to_uint8(blurred)


def gaussian_noise(image: NDArray[np.uint8], level: int, rng: np.random.Generator) -> NDArray[np.uint8]:
    sigma = _strength((0.015, 0.03, 0.05, 0.08, 0.12), level)
    noise = rng.normal(0.0, sigma, size=image.shape).astype(np.float32)
    return _to_uint8(_to_float(image) + noise)


def impulse_noise(image: NDArray[np.uint8], level: int, rng: np.random.Generator) -> NDArray[np.uint8]:
    fraction = _strength((0.004, 0.012, 0.028, 0.055, 0.11), level)
    hit = rng.random(image.shape[:2]) < fraction
    salt = rng.random(image.shape[:2]) < 0.5
    noisy = image.copy()
    noisy[hit & salt] = 255
    noisy[hit & ~salt] = 0
    return noisy


def _encode_decode(image: NDArray[np.uint8], format: str, **options: object) -> NDArray[np.uint8]:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format=format, **options)
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        return np.asarray(decoded.convert("RGB")).copy()


def jpeg(image: NDArray[np.uint8], level: int, rng: np.random.Generator) -> NDArray[np.uint8]:
    quality = int(_strength((40, 22, 12, 7, 3), level))
    return _encode_decode(image, "JPEG", quality=quality)


def jpeg2000(image: NDArray[np.uint8], level: int, rng: np.random.Generator) -> NDArray[np.uint8]:
    # A PSNR target rather than a compression ratio: small images hit the codestream's header floor long
    # before a high ratio, which would flatten the top levels of crops distorted on the fly.
    target_psnr = _strength((36.0, 32.0, 29.0, 26.0, 23.0), level)
    # OpenJPEG refuses more wavelet levels than the image is large enough for.
    resolutions = max(1, min(6, int(np.log2(min(image.shape[:2]))) - 2))
    return _encode_decode(
        image,
        "JPEG2000",
        quality_mode="dB",
        quality_layers=[target_psnr],
        irreversible=True,
        num_resolutions=resolutions,
    )


def contrast_decrease(image: NDArray[np.uint8], level: int, rng: np.random.Generator) -> NDArray[np.uint8]:
    keep = _strength((0.75, 0.55, 0.4, 0.27, 0.16), level)
    pixels = _to_float(image)
    mean = _luminance(pixels).mean()
    return _to_uint8(mean + keep * (pixels - mean))


def brighten(image: NDArray[np.uint8], level: int, rng: np.random.Generator) -> NDArray[np.uint8]:
    # A curve rather than an offset: shadows open up and highlights crush, as with over-exposure.
    gamma = _strength((1.5, 2.0, 2.8, 4.0, 6.0), level)
    return _to_uint8(1.0 - (1.0 - _to_float(image)) ** gamma)


def darken(image: NDArray[np.uint8], level: int, rng: np.random.Generator) -> NDArray[np.uint8]:
    gamma = _strength((1.3, 1.6, 2.0, 2.6, 3.5), level)
    return _to_uint8(_to_float(image) ** gamma)


def desaturate(image: NDArray[np.uint8], level: int, rng: np.random.Generator) -> NDArray[np.uint8]:
    keep = _strength((0.6, 0.4, 0.2, 0.0, -0.3), level)
    pixels = _to_float(image)
    grey = _luminance(pixels)[:, :, None]
    # Past grey (negative keep) the hues invert: a stronger colour distortion than plain greyscale.
    return _to_uint8(grey + keep * (pixels - grey))


def colour_quantisation(image: NDArray[np.uint8], level: int, rng: np.random.Generator) -> NDArray[np.uint8]:
    colours = int(_strength((48, 24, 12, 6, 3), level))
    # Octree is fifty times faster than median cut here and bands the same way without dithering.
    palette = Image.fromarray(image).quantize(
        colors=colours, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE
    )
    return np.asarray(palette.convert("RGB")).copy()


def pixelate(image: NDArray[np.uint8], level: int, rng: np.random.Generator) -> NDArray[np.uint8]:
    factor = _strength((2.0, 3.0, 4.0, 6.0, 8.0), level)
    height, width = image.shape[:2]
    small = (max(1, round(width / factor)), max(1, round(height / factor)))
    pil = Image.fromarray(image).resize(small, Image.Resampling.BOX)
    return np.asarray(pil.resize((width, height), Image.Resampling.NEAREST)).copy()


def oversharpen(image: NDArray[np.uint8], level: int, rng: np.random.Generator) -> NDArray[np.uint8]:
    amount = _strength((1.0, 2.0, 3.5, 6.0, 10.0), level)
    pixels = _to_float(image)
    detail = pixels - ndimage.gaussian_filter(pixels, sigma=(1.5, 1.5, 0), mode="reflect")
    return _to_uint8(pixels + amount * detail)


def chromatic_aberration(image: NDArray[np.uint8], level: int, rng: np.random.Generator) -> NDArray[np.uint8]:
    offset = _strength((0.5, 1.0, 1.8, 3.0, 4.5), level)
    angle = rng.uniform(0.0, 2.0 * np.pi)
    shift = offset * np.array([np.sin(angle), np.cos(angle)])
    pixels = _to_float(image)
    shifted = pixels.copy()
    # Red and blue land on either side of green, as a lens's lateral aberration does.
    shifted[:, :, 0] = ndimage.shift(pixels[:, :, 0], shift, order=1, mode="nearest")
    shifted[:, :, 2] = ndimage.shift(pixels[:, :, 2], -shift, order=1, mode="nearest")
    return _to_uint8(shifted)


DISTORTIONS: dict[str, Distortion] = {
    "gaussian_blur": gaussian_blur,
    "motion_blur": motion_blur,
    "gaussian_noise": gaussian_noise,
    "impulse_noise": impulse_noise,
    "jpeg": jpeg,
    "jpeg2000": jpeg2000,
    "contrast_decrease": contrast_decrease,
    "brighten": brighten,
    "darken": darken,
    "desaturate": desaturate,
    "colour_quantisation": colour_quantisation,
    "pixelate": pixelate,
    "oversharpen": oversharpen,
    "chromatic_aberration": chromatic_aberration,
}
DISTORTION_NAMES: list[str] = list(DISTORTIONS)


def distortion_index(type_name_or_index: str | int) -> int:
    if isinstance(type_name_or_index, str):
        if type_name_or_index not in DISTORTIONS:
            raise KeyError(f"unknown distortion {type_name_or_index!r}; known: {', '.join(DISTORTION_NAMES)}")
        return DISTORTION_NAMES.index(type_name_or_index)
    if not 0 <= type_name_or_index < len(DISTORTION_NAMES):
        raise IndexError(f"distortion index {type_name_or_index} outside 0..{len(DISTORTION_NAMES) - 1}")
    return int(type_name_or_index)


def distort(
    image: NDArray[np.uint8], type_name_or_index: str | int, level: int, rng: np.random.Generator
) -> NDArray[np.uint8]:
    """Apply one distortion (by name or label index) at `level` (1..5) to an HxWx3 uint8 RGB image."""
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 uint8 RGB image, got {image.dtype} {image.shape}")
    return DISTORTIONS[DISTORTION_NAMES[distortion_index(type_name_or_index)]](image, level, rng)
