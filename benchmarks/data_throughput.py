"""Crops per second: biqa's K-crop loader against a naive per-crop loader, on BIQ2021 images.

The naive loader is the way the authors' Life-IQA code feeds a model: the sample list repeats every image
K times, and each sample opens and decodes its file, cuts one random crop, converts it to a float tensor
and normalises it, on the CPU, in the loader's workers. biqa decodes each image once per visit and, with
`cut_on_device` (the data configs' default), hands over the decoded image once, uint8, with its K crop boxes:
the crops are cut, converted and normalised on the model's device (here this CPU, in the main process).

Two figures, each biqa's rate over the naive loader's, with the same images, K, crop size, batch (in
crops) and worker count:
  loader_ratio  crops as the DataLoader hands them over (biqa: B x K per batch, still to be cut from the
                batch's uint8 images on the device; naive: normalised float crops);
  ready_ratio   crops ready for the forward pass: biqa's crops cut from the uint8 batch straight into a float
                buffer and normalised here, in the main process, while the workers keep loading (`DeviceCut`).
The loaders run in alternating rounds (median taken) so that a change in machine load hits both.

  python3 benchmarks/data_throughput.py --root /work/shared/data/biq2021 --images 128 [--image-cache]
Prints a table and one JSON line.

Measured with cut_on_device on this 2-core VM with no other job running (load = the benchmark's own processes):
  --images 128                 load 3.02: naive 517 crops/s, loader_ratio 19.10, ready_ratio 6.11
  --images 128 --image-cache   load 2.54: naive 565 crops/s, loader_ratio 17.50, ready_ratio 5.17,
                               cache_loader_ratio 19.38, cache_ready_ratio 6.07
With the crops cut in the workers (cut_on_device false) the idle ratios were 6.0 / 4.2. Under heavy load from
other jobs (load 6-8) the ratios read higher (18-27 / 8-9): the naive loader suffers more.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Iterable

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from biqa.data.datasets.readers.biq2021 import BIQ2021
from biqa.data.datasets.records import DatasetRecords
from biqa.data.loading.crops import cut_crops
from biqa.data.loading.datamodule import IQADataModule

IMAGENET_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
IMAGENET_STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


class NaivePerCropDataset(Dataset):
    """len = images x K; every item opens and decodes its image for one random, normalised float crop."""

    def __init__(self, records: DatasetRecords, crops_per_image: int, size: int, resize: int | None) -> None:
        self.samples = [(r.path, r.score) for r in records.records for _ in range(crops_per_image)]
        self.size, self.resize = size, resize

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, float]:
        path, score = self.samples[i]
        image = Image.open(path).convert("RGB")
        if self.resize:
            width, height = image.size
            scale = self.resize / min(width, height)
            image = image.resize((round(width * scale), round(height * scale)), Image.BILINEAR)
        width, height = image.size
        top, left = np.random.randint(0, height - self.size + 1), np.random.randint(0, width - self.size + 1)
        crop = image.crop((left, top, left + self.size, top + self.size))
        if np.random.rand() < 0.5:
            crop = crop.transpose(Image.FLIP_LEFT_RIGHT)
        tensor = torch.from_numpy(np.asarray(crop, dtype=np.uint8).copy()).permute(2, 0, 1).float().div(255)
        return (tensor - IMAGENET_MEAN[0]) / IMAGENET_STD[0], score


def naive_loader(records: DatasetRecords, args: argparse.Namespace) -> DataLoader:
    dataset = NaivePerCropDataset(records, args.crops, args.size, args.resize)
    return DataLoader(dataset, batch_size=args.batch_images * args.crops, shuffle=True, drop_last=True,
                      num_workers=args.workers, persistent_workers=args.workers > 0)


def biqa_loader(records: DatasetRecords, args: argparse.Namespace, image_cache: bool) -> DataLoader:
    datamodule = IQADataModule(
        lambda: records, split={"strategy": "all", "seed": 0},
        train_crops={"size": args.size, "count": args.crops, "resize": args.resize, "cut_on_device": True},
        batch_size=args.batch_images, num_workers=args.workers, persistent_workers=True,
        image_cache=image_cache, image_cache_dir=args.cache_dir,
    )
    datamodule.prepare_data()
    datamodule.setup("fit")
    return datamodule.train_dataloader()


class DeviceCut:
    """What the model's device does with biqa's batch, here on this CPU: each image's K crops cut from the
    batch's uint8 images straight into a float buffer (`cut_crops`; the copy converts), then normalised with
    one multiply-add per channel with scalar factors (the vectorised path; broadcasting (1,3,1,1) tensors is
    several times slower). The buffer is reused across batches as a GPU's caching allocator reuses memory (a
    fresh 60 MB tensor per batch costs more in page faults here than the arithmetic)."""

    def __init__(self) -> None:
        self.buffer = torch.empty(0)
        self.scale = (1 / (255 * IMAGENET_STD)).flatten().tolist()
        self.shift = (-IMAGENET_MEAN / IMAGENET_STD).flatten().tolist()

    def __call__(self, batch: dict) -> torch.Tensor:
        pixels, boxes, size = batch["pixels"], batch["boxes"], batch["crop_size"]
        shape = (*boxes.shape[:2], pixels.shape[1], size, size)
        if self.buffer.shape != shape:
            self.buffer = torch.empty(shape)
        crops = cut_crops(pixels, boxes, size, out=self.buffer).flatten(0, 1)
        for channel, (scale, shift) in enumerate(zip(self.scale, self.shift, strict=True)):
            crops[:, channel].mul_(scale).add_(shift)
        return crops


def crops_per_second(batches: Iterable, count: Callable[[object], int]) -> float:
    start, crops = time.perf_counter(), 0
    for batch in batches:
        crops += count(batch)
    return crops / (time.perf_counter() - start)


def measure(loaders: dict[str, DataLoader], passes: dict[str, Callable], rounds: int) -> dict[str, float]:
    """Median crops/s of each pass; every pass is one full epoch of its (already warm) loader."""
    for loader in loaders.values():
        for _ in loader:  # starts the persistent workers and fills the page cache
            pass
    rates: dict[str, list[float]] = {name: [] for name in passes}
    for _ in range(rounds):
        for name, run in passes.items():
            rates[name].append(run())
    return {name: statistics.median(values) for name, values in rates.items()}


def handed_over(loader: DataLoader) -> Callable[[], float]:
    return lambda: crops_per_second(loader, lambda batch: batch["boxes"].shape[0] * batch["boxes"].shape[1])


def ready(loader: DataLoader, cut: DeviceCut) -> Callable[[], float]:
    return lambda: crops_per_second((cut(batch) for batch in loader), len)


def subset(records: DatasetRecords, n: int, seed: int) -> DatasetRecords:
    chosen = np.random.default_rng(seed).permutation(len(records))[:n]
    return DatasetRecords(records.name, records.root, [records.records[i] for i in sorted(chosen)], records.scale)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", required=True, help="a BIQ2021 folder (Images/, Train (Images and MOS).csv)")
    parser.add_argument("--images", type=int, default=128, help="images in the benchmark's subset")
    parser.add_argument("--crops", type=int, default=25, help="K, crops per image")
    parser.add_argument("--size", type=int, default=224, help="crop side")
    parser.add_argument("--resize", type=int, default=None, help="short side before cropping (default: native)")
    parser.add_argument("--batch-images", type=int, default=4, help="images per biqa batch (naive: x K crops)")
    parser.add_argument("--workers", type=int, default=2, help="loader workers, both loaders")
    parser.add_argument("--rounds", type=int, default=3, help="alternating measured epochs per loader")
    parser.add_argument("--image-cache", action="store_true", help="also measure biqa with data.image_cache")
    parser.add_argument("--cache-dir", default=None, help="image cache folder (default: a temporary one)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    torch.manual_seed(args.seed)
    # The main process only cuts and normalises; the workers have the other cores (more threads only thrash).
    torch.set_num_threads(1)
    records = subset(BIQ2021(args.root)(), args.images, args.seed)
    with tempfile.TemporaryDirectory() as scratch:
        args.cache_dir = args.cache_dir or scratch
        loaders = {"naive": naive_loader(records, args), "biqa": biqa_loader(records, args, image_cache=False)}
        if args.image_cache:
            loaders["biqa_cache"] = biqa_loader(records, args, image_cache=True)

        # The naive batch is (crops, 3, h, w) floats, already normalised: handed over = ready.
        passes = {"naive": lambda: crops_per_second(loaders["naive"], lambda batch: len(batch[0]))}
        for name in [name for name in loaders if name != "naive"]:
            passes[f"{name}_loader"] = handed_over(loaders[name])
            passes[f"{name}_ready"] = ready(loaders[name], DeviceCut())
        rates = measure(loaders, passes, args.rounds)

    naive = rates["naive"]
    result = {
        "benchmark": "data_throughput", "images": len(records), "crops_per_image": args.crops,
        "crop": args.size, "resize": args.resize, "workers": args.workers, "batch_crops": args.batch_images * args.crops,
        "rounds": args.rounds, "load_average_1min": round(os.getloadavg()[0], 2), "cpus": os.cpu_count(),
        "crops_per_s": {name: round(rate, 1) for name, rate in rates.items()},
        "loader_ratio": round(rates["biqa_loader"] / naive, 2), "ready_ratio": round(rates["biqa_ready"] / naive, 2),
    }
    if args.image_cache:
        result["cache_loader_ratio"] = round(rates["biqa_cache_loader"] / naive, 2)
        result["cache_ready_ratio"] = round(rates["biqa_cache_ready"] / naive, 2)

    print(f"{len(records)} BIQ2021 images, K={args.crops} crops of {args.size}px, {args.workers} workers, "
          f"load average {result['load_average_1min']} on {result['cpus']} CPUs")
    print(f"{'loader':<22}{'crops/s':>10}{'x naive':>10}")
    for name, rate in rates.items():
        print(f"{name:<22}{rate:>10.1f}{rate / naive:>10.2f}")
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
