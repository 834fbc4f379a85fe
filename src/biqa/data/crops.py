"""Decode an image once per visit and cut K aligned crops from it (RGB, plus depth when given)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps
from torch.utils.data import Dataset

from biqa.data.records import ImageRecord


class ImageDecodeError(RuntimeError):
    pass


def load_rgb(path: Path, draft_short_side: int | None = None) -> Image.Image:
    """Decode any Pillow-readable image to 8-bit RGB: EXIF orientation applied, 16-bit samples scaled to
    8 bits, grey and CMYK converted, transparency composited onto white (as a browser shows it; the colour
    under fully transparent pixels is arbitrary). docs/bad_input.md lists every case.
    `draft_short_side`: a JPEG is decoded at the smallest DCT scale (1/1 to 1/8) whose short side is still
    at least this long (other formats decode in full)."""
    try:
        with Image.open(path) as image:
            if draft_short_side:
                draft_jpeg(image, draft_short_side)
            # In place, and no conversion of what is already RGB: each copy of a decoded image costs about
            # as much as decoding a 512 px JPEG.
            ImageOps.exif_transpose(image, in_place=True)
            if image.mode in ("I;16", "I;16B", "I;16L", "I"):
                image = Image.fromarray((np.asarray(image, dtype=np.float64) / 257.0).clip(0, 255).astype(np.uint8))
            if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
                return composite_on_white(image)
            return image if image.mode == "RGB" else image.convert("RGB")
    except FileNotFoundError:
        raise ImageDecodeError(f"{path}: file not found") from None
    except Exception as error:  # whatever a decoder raises (truncated data, decompression bomb, bad headers)
        raise ImageDecodeError(f"{path}: cannot decode image ({type(error).__name__}: {error})") from error


def composite_on_white(image: Image.Image) -> Image.Image:
    rgba = image.convert("RGBA")
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(white, rgba).convert("RGB")


def draft_jpeg(image: Image.Image, short_side: int) -> None:
    # JPEG decoders scale by 1/2, 1/4 or 1/8 inside the DCT, several times faster than a full decode (SPAQ's
    # 4000x3000 photos); Pillow picks the largest reduction that keeps both sides at least the size asked.
    width, height = image.size
    scale = short_side / min(width, height)
    if scale < 1:
        image.draft(None, (math.ceil(width * scale), math.ceil(height * scale)))


def decode_resized(path: Path, resize: int | None, jpeg_draft: bool) -> np.ndarray:
    """HxWx3 uint8, what crops are cut from: the decoded image, short side resized to `resize` (None: native).
    `biqa.data.cache.ResizedImageCache` stores exactly this array."""
    image = load_rgb(path, draft_short_side=resize if jpeg_draft else None)
    if resize:
        image = resize_short_side(image, resize)
    return np.asarray(image)


def resize_short_side(image: Image.Image, short_side: int) -> Image.Image:
    width, height = image.size
    scale = short_side / min(width, height)
    if scale == 1:
        return image
    return image.resize((max(1, round(width * scale)), max(1, round(height * scale))), Image.BICUBIC)


@dataclass(frozen=True)
class CropSpec:
    size: int = 224
    count: int = 1
    resize: int | None = None
    """Resize so the short side is this long before cropping (None keeps the native resolution)."""
    small_images: str = "upscale"
    """What to do with an image smaller than the crop: 'upscale' its short side to the crop size, or 'error'."""
    hflip: bool = False
    jpeg_draft: bool = True
    """With `resize` set, decode JPEGs at a reduced DCT scale first (see `load_rgb`): much faster on large
    photos; pixels differ slightly from a full decode, identically in every run and in the image cache."""


class CropDataset(Dataset):
    """K crops per image, each drawn from a generator seeded by what identifies the visit, so that any
    process or worker, in any run, draws the same crops for it: evaluation seeds by (seed, image index), the
    same crops every epoch; training by (seed, epoch, image index), fresh crops every epoch. Training keys
    are (position, epoch) pairs from `biqa.data.resumable.EpochShuffle`; a plain position means epoch 0."""

    def __init__(self, records: list[ImageRecord], indices: list[int], spec: CropSpec, train: bool,
                 depth_provider=None, seed: int = 0, image_cache=None) -> None:
        self.records, self.indices, self.spec, self.train = records, indices, spec, train
        self.depth_provider, self.seed = depth_provider, seed
        if image_cache is not None and not image_cache.serves(spec):
            raise ValueError(f"image cache {image_cache.folder} holds other resize settings than {spec}")
        self.image_cache = image_cache

    def __len__(self) -> int:
        return len(self.indices)

    @property
    def config_key(self) -> str:
        return "train_crops" if self.train else "eval_crops"

    def load_pixels(self, record: ImageRecord) -> np.ndarray:
        """HxWxC uint8: RGB, plus a 4th depth channel when a provider is set (resized to the RGB's size).
        Depth is resized on its own: Pillow resamples RGBA premultiplied by alpha, which would blacken
        the image wherever the map is 0."""
        if self.image_cache is not None:
            pixels = self.image_cache.load(record.path)
        else:
            pixels = decode_resized(record.path, self.spec.resize, self.spec.jpeg_draft)
        height, width = pixels.shape[:2]
        if min(height, width) < self.spec.size:
            if self.spec.small_images == "error":
                raise ImageDecodeError(
                    f"{record.path}: {width}x{height} is smaller than the {self.spec.size}px crop; "
                    f"set data.{self.config_key}.small_images=upscale or lower data.{self.config_key}.size"
                )
            pixels = np.asarray(resize_short_side(Image.fromarray(pixels), self.spec.size))
        if self.depth_provider is not None:
            depth = Image.fromarray(self.depth_provider.load(record)).resize(pixels.shape[1::-1], Image.BILINEAR)
            pixels = np.dstack([pixels, np.asarray(depth)])
        return pixels

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, torch.Tensor]:
        position, epoch = key if isinstance(key, tuple) else (key, 0)
        index = self.indices[position]
        record = self.records[index]
        pixels = self.load_pixels(record)
        rng = np.random.default_rng((self.seed, epoch, index) if self.train else (self.seed, index))
        crops = random_crops(pixels, self.spec.size, self.spec.count, rng, self.train and self.spec.hflip)
        crops = torch.from_numpy(crops)
        item = {
            "images": crops[:, :3].contiguous(),
            "score": torch.tensor(record.score, dtype=torch.float32),
            "index": torch.tensor(index, dtype=torch.long),
            "distortion_type": torch.tensor(_label(record.distortion_type), dtype=torch.long),
            "distortion_level": torch.tensor(_label(record.distortion_level), dtype=torch.long),
        }
        if self.depth_provider is not None:
            item["depth"] = crops[:, 3:].contiguous()
        return item


def random_crops(pixels: np.ndarray, size: int, count: int, rng: np.random.Generator, hflip: bool) -> np.ndarray:
    """(count, C, size, size) crops of HxWxC `pixels` at uniform random positions, each flipped horizontally
    with p=0.5, written once into their channel-first array (no stacking, flipping or transposing copies)."""
    height, width = pixels.shape[:2]
    tops = rng.integers(0, height - size + 1, count)
    lefts = rng.integers(0, width - size + 1, count)
    flips = rng.random(count) < 0.5 if hflip else np.zeros(count, dtype=bool)
    planes = pixels.transpose(2, 0, 1)
    if count * size * size >= height * width:
        # Crops covering more pixels than the image: transpose the image once, then copy whole rows.
        planes = np.ascontiguousarray(planes)
    crops = np.empty((count, pixels.shape[2], size, size), dtype=pixels.dtype)
    for crop, top, left, flip in zip(crops, tops, lefts, flips, strict=True):
        window = planes[:, top:top + size, left:left + size]
        crop[...] = window[..., ::-1] if flip else window
    return crops


def _label(value: int | None) -> int:
    return -1 if value is None else int(value)
