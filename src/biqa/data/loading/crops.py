"""Decode an image once per visit and cut K aligned crops from it (RGB, plus depth when given): in the
loader's workers, or on the model's device from the decoded image and the crops' boxes (`cut_on_device`)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps
from torch.utils.data import Dataset, default_collate

from biqa.data.datasets.records import ImageRecord


class ImageDecodeError(RuntimeError):
    pass


def load_rgb(path: Path, draft_short_side: int | None = None,
             draft_size: tuple[int, int] | None = None) -> Image.Image:
    """Decode any Pillow-readable image to 8-bit RGB: EXIF orientation applied, 16-bit samples scaled to
    8 bits, grey and CMYK converted, transparency composited onto white (as a browser shows it; the colour
    under fully transparent pixels is arbitrary). docs/bad_input.md lists every case.
    `draft_short_side`: a JPEG is decoded at the smallest DCT scale (1/1 to 1/8) whose short side is still
    at least this long (other formats decode in full); `draft_size` (width, height): the smallest whose sides
    are both at least these."""
    try:
        with Image.open(path) as image:
            if draft_short_side:
                draft_jpeg(image, draft_short_side)
            elif draft_size and image.format == "JPEG":
                image.draft(None, draft_size)
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


def decode_resized(path: Path, resize: int | tuple[int, int] | None, jpeg_draft: bool) -> np.ndarray:
    """HxWx3 uint8, what crops are cut from: the decoded image, resized by `resize` (None: native; an int: its
    short side to that length, bicubic; (height, width): to exactly that size, bilinear, as torchvision's
    `Resize((h, w))` does on a PIL image). `biqa.data.loading.cache.ResizedImageCache` stores exactly this array."""
    if isinstance(resize, tuple):
        height, width = resize
        image = load_rgb(path, draft_size=(width, height) if jpeg_draft else None)
        return np.asarray(image.resize((width, height), Image.BILINEAR))
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
    resize: int | tuple[int, int] | None = None
    """Before cropping: an int resizes the short side to it; [height, width] resizes to exactly that size, as
    the Life-IQA authors' `Resize((512, 384))` does (aspect ratio not kept); None keeps the native size."""
    small_images: str = "upscale"
    """What to do with an image smaller than the crop: 'upscale' its short side to the crop size, or 'error'."""
    hflip: bool = False
    jpeg_draft: bool = True
    """With `resize` set, decode JPEGs at a reduced DCT scale first (see `load_rgb`): much faster on large
    photos; pixels differ slightly from a full decode, identically in every run and in the image cache."""
    cut_on_device: bool = False
    """Hand over each decoded image once, with its K crop boxes, and cut the crops where the batch lands
    (`cut_crops`, called by the model's `on_after_batch_transfer`). K crops of 224 hold ~5x the bytes of a
    512 px image: copying them through the workers' shared memory was the data path's main cost."""

    def __post_init__(self) -> None:
        if self.resize is not None and not isinstance(self.resize, int):
            size = tuple(int(side) for side in self.resize)
            if len(size) != 2:
                raise ValueError(f"crop resize {list(self.resize)} must be one short side or [height, width]")
            object.__setattr__(self, "resize", size)  # hashable: specs key the image caches


class CropDataset(Dataset):
    """K crops per image, each drawn from a generator seeded by what identifies the visit, so that any
    process or worker, in any run, draws the same crops for it: evaluation seeds by (seed, image index), the
    same crops every epoch; training by (seed, epoch, image index), fresh crops every epoch. Training keys
    are (position, epoch) pairs from `biqa.data.loading.resumable.EpochShuffle`; a plain position means epoch 0.
    `draws_per_image` > 1: every image holds that many consecutive positions, each an independent draw of
    `spec.count` crops (seeded by the draw's number too), as in a sample list that repeats every image."""

    def __init__(self, records: list[ImageRecord], indices: list[int], spec: CropSpec, train: bool,
                 depth_provider=None, seed: int = 0, image_cache=None, draws_per_image: int = 1) -> None:
        self.records, self.indices, self.spec, self.train = records, indices, spec, train
        self.draws_per_image = draws_per_image
        self.depth_provider, self.seed = depth_provider, seed
        if image_cache is not None and not image_cache.serves(spec):
            raise ValueError(f"image cache {image_cache.folder} holds other resize settings than {spec}")
        self.image_cache = image_cache

    def __len__(self) -> int:
        return len(self.indices) * self.draws_per_image

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

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        position, epoch = key if isinstance(key, tuple) else (key, 0)
        position, draw = divmod(position, self.draws_per_image)
        index = self.indices[position]
        record = self.records[index]
        pixels = self.load_pixels(record)
        visit = (self.seed, epoch, index) if self.train else (self.seed, index)
        rng = np.random.default_rng((*visit, draw) if self.draws_per_image > 1 else visit)
        hflip = self.train and self.spec.hflip
        labels = {
            "score": torch.tensor(record.score, dtype=torch.float32),
            "index": torch.tensor(index, dtype=torch.long),
            "distortion_type": torch.tensor(_label(record.distortion_type), dtype=torch.long),
            "distortion_level": torch.tensor(_label(record.distortion_level), dtype=torch.long),
        }
        if self.spec.cut_on_device:
            boxes = crop_boxes(*pixels.shape[:2], self.spec.size, self.spec.count, rng, hflip)
            # Depth rides along as the 4th channel, so its crops stay aligned with the colours'.
            return {"pixels": torch.from_numpy(np.ascontiguousarray(pixels.transpose(2, 0, 1))),
                    "boxes": torch.from_numpy(boxes), "crop_size": self.spec.size, **labels}
        crops = torch.from_numpy(random_crops(pixels, self.spec.size, self.spec.count, rng, hflip))
        item = {"images": crops[:, :3].contiguous(), **labels}
        if self.depth_provider is not None:
            item["depth"] = crops[:, 3:].contiguous()
        return item


def crop_boxes(height: int, width: int, size: int, count: int, rng: np.random.Generator,
               hflip: bool) -> np.ndarray:
    """(count, 3) int64 rows (top, left, flip) of `size` crops at uniform random positions in a height x width
    image, each flipped horizontally with p=0.5 when `hflip`."""
    tops = rng.integers(0, height - size + 1, count)
    lefts = rng.integers(0, width - size + 1, count)
    flips = rng.random(count) < 0.5 if hflip else np.zeros(count, dtype=bool)
    return np.stack([tops, lefts, flips], axis=1).astype(np.int64)


def random_crops(pixels: np.ndarray, size: int, count: int, rng: np.random.Generator, hflip: bool) -> np.ndarray:
    """(count, C, size, size) crops of HxWxC `pixels` at uniform random positions, each flipped horizontally
    with p=0.5, written once into their channel-first array (no stacking, flipping or transposing copies)."""
    height, width = pixels.shape[:2]
    planes = pixels.transpose(2, 0, 1)
    if count * size * size >= height * width:
        # Crops covering more pixels than the image: transpose the image once, then copy whole rows.
        planes = np.ascontiguousarray(planes)
    crops = np.empty((count, pixels.shape[2], size, size), dtype=pixels.dtype)
    boxes = crop_boxes(height, width, size, count, rng, hflip)
    for crop, (top, left, flip) in zip(crops, boxes, strict=True):
        window = planes[:, top:top + size, left:left + size]
        crop[...] = window[..., ::-1] if flip else window
    return crops


def collate_pixels(items: list[dict[str, Any]]) -> dict[str, Any]:
    """`default_collate` for a `cut_on_device` CropDataset. Each image is zero-padded at the bottom and right
    to the batch's largest height and width (its boxes stay inside it), so that images of any aspect ratio
    batch together; `crop_size` stays one int."""
    height = max(item["pixels"].shape[1] for item in items)
    width = max(item["pixels"].shape[2] for item in items)
    padded = [F.pad(image, (0, width - image.shape[2], 0, height - image.shape[1]))
              for image in (item["pixels"] for item in items)]
    rest = [{key: value for key, value in item.items() if key not in ("pixels", "crop_size")}
            for item in items]
    # default_collate stacks into shared memory in a loader worker: the batch is not copied again to be sent.
    return {"pixels": default_collate(padded), "crop_size": items[0]["crop_size"], **default_collate(rest)}


def unit_range(pixels: torch.Tensor) -> torch.Tensor:
    """uint8 pixels (0-255) as the float [0, 1] every network of biqa reads (a float input is not changed)."""
    as_float = pixels.float()
    return as_float.div_(255) if as_float is not pixels else as_float.div(255)


def net_inputs(batch: dict) -> dict:
    """A loader's batch as the net reads it, on the batch's device: the K crops cut if the loader handed over
    whole images (`pixels` + `boxes`, `cut_on_device`), crops and depth in [0, 1]. The one way from a batch to
    the net's input: training, evaluation, prediction and the feature cache all go through it."""
    batch = dict(batch)
    if "pixels" in batch:
        crops = cut_crops(batch.pop("pixels"), batch.pop("boxes"), batch.pop("crop_size"))
        batch = {"images": crops[:, :, :3], **batch}
        if crops.shape[2] > 3:
            batch["depth"] = crops[:, :, 3:]
    for key in ("images", "depth"):
        if key in batch:
            batch[key] = unit_range(batch[key])
    return batch


def cut_crops(pixels: torch.Tensor, boxes: torch.Tensor, size: int,
              out: torch.Tensor | None = None) -> torch.Tensor:
    """(B, K, C, size, size) crops of the (B, C, H, W) images `pixels` at `boxes` (B, K, 3: top, left, flip),
    on the tensors' device: the crops `random_crops` cuts from the same image and boxes.
    `out`: a tensor to write them into (any dtype: the copy converts)."""
    if pixels.device.type == "cpu":
        return _copy_crops(pixels, boxes, size, out)
    crops = _gather_crops(pixels, boxes, size)
    return crops if out is None else out.copy_(crops)


def _copy_crops(pixels: torch.Tensor, boxes: torch.Tensor, size: int,
                out: torch.Tensor | None) -> torch.Tensor:
    # On a CPU, one copy per crop is several times faster than a gather, which computes every element's
    # offset. torch has no negative strides: a flipped crop goes through one crop-sized temporary.
    out = pixels.new_empty((*boxes.shape[:2], pixels.shape[1], size, size)) if out is None else out
    for image, image_boxes, targets in zip(pixels, boxes.tolist(), out, strict=True):
        for target, (top, left, flip) in zip(targets, image_boxes, strict=True):
            window = image[:, top:top + size, left:left + size]
            target.copy_(window.flip(-1) if flip else window)
    return out


def _gather_crops(pixels: torch.Tensor, boxes: torch.Tensor, size: int) -> torch.Tensor:
    # On an accelerator: one indexing kernel over a view of every crop window, with no read of the boxes
    # back to the host (a sync) and no launch per crop. Flipped crops come from the mirrored images.
    top, left, flip = boxes.long().unbind(-1)
    batch, width = pixels.shape[0], pixels.shape[-1]
    images = torch.cat([pixels, pixels.flip(-1)])
    image = torch.arange(batch, device=pixels.device)[:, None] + flip * batch
    left = torch.where(flip.bool(), width - left - size, left)
    windows = images.unfold(2, size, 1).unfold(3, size, 1)  # (2B, C, H - size + 1, W - size + 1, size, size)
    return windows[image, :, top, left]


def _label(value: int | None) -> int:
    return -1 if value is None else int(value)
