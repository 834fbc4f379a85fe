"""Decode an image once per visit and cut K aligned crops from it (RGB, plus depth when given)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps
from torch.utils.data import Dataset

from biqa.data.records import ImageRecord


class ImageDecodeError(RuntimeError):
    pass


def load_rgb(path: Path) -> Image.Image:
    """Decode any Pillow-readable image to 8-bit RGB: EXIF orientation applied, 16-bit samples scaled to
    8 bits, grey and CMYK converted, transparency composited onto white (as a browser shows it; the colour
    under fully transparent pixels is arbitrary). docs/bad_input.md lists every case."""
    try:
        with Image.open(path) as image:
            image = ImageOps.exif_transpose(image)
            if image.mode in ("I;16", "I;16B", "I;16L", "I"):
                image = Image.fromarray((np.asarray(image, dtype=np.float64) / 257.0).clip(0, 255).astype(np.uint8))
            if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
                return composite_on_white(image)
            return image.convert("RGB")
    except FileNotFoundError:
        raise ImageDecodeError(f"{path}: file not found") from None
    except Exception as error:  # whatever a decoder raises (truncated data, decompression bomb, bad headers)
        raise ImageDecodeError(f"{path}: cannot decode image ({type(error).__name__}: {error})") from error


def composite_on_white(image: Image.Image) -> Image.Image:
    rgba = image.convert("RGBA")
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(white, rgba).convert("RGB")


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


class CropDataset(Dataset):
    """K crops per image, each drawn from a generator seeded by what identifies the visit, so that any
    process or worker, in any run, draws the same crops for it: evaluation seeds by (seed, image index), the
    same crops every epoch; training by (seed, epoch, image index), fresh crops every epoch. Training keys
    are (position, epoch) pairs from `biqa.data.resumable.EpochShuffle`; a plain position means epoch 0."""

    def __init__(self, records: list[ImageRecord], indices: list[int], spec: CropSpec, train: bool,
                 depth_provider=None, seed: int = 0) -> None:
        self.records, self.indices, self.spec, self.train = records, indices, spec, train
        self.depth_provider, self.seed = depth_provider, seed

    def __len__(self) -> int:
        return len(self.indices)

    @property
    def config_key(self) -> str:
        return "train_crops" if self.train else "eval_crops"

    def load_pixels(self, record: ImageRecord) -> np.ndarray:
        """HxWxC uint8: RGB, plus a 4th depth channel when a provider is set (resized with the image)."""
        image = load_rgb(record.path)
        if self.depth_provider is not None:
            depth = Image.fromarray(self.depth_provider.load(record)).resize(image.size, Image.BILINEAR)
            image = Image.merge("RGBA", (*image.split(), depth))
        if self.spec.resize:
            image = resize_short_side(image, self.spec.resize)
        if min(image.size) < self.spec.size:
            if self.spec.small_images == "error":
                raise ImageDecodeError(
                    f"{record.path}: {image.size[0]}x{image.size[1]} is smaller than the {self.spec.size}px crop; "
                    f"set data.{self.config_key}.small_images=upscale or lower data.{self.config_key}.size"
                )
            image = resize_short_side(image, self.spec.size)
        return np.asarray(image)

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, torch.Tensor]:
        position, epoch = key if isinstance(key, tuple) else (key, 0)
        index = self.indices[position]
        record = self.records[index]
        pixels = self.load_pixels(record)
        rng = np.random.default_rng((self.seed, epoch, index) if self.train else (self.seed, index))
        crops = random_crops(pixels, self.spec.size, self.spec.count, rng, self.train and self.spec.hflip)
        crops = torch.from_numpy(crops).permute(0, 3, 1, 2)
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
    """(count, size, size, C) crops at uniform random positions, each flipped horizontally with p=0.5."""
    height, width = pixels.shape[:2]
    tops = rng.integers(0, height - size + 1, count)
    lefts = rng.integers(0, width - size + 1, count)
    crops = np.stack([pixels[t:t + size, l:l + size] for t, l in zip(tops, lefts)])
    if hflip:
        flip = rng.random(count) < 0.5
        crops[flip] = crops[flip, :, ::-1]
    return crops


def _label(value: int | None) -> int:
    return -1 if value is None else int(value)
