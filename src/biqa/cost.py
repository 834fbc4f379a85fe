"""Parameters, forward FLOPs, latency and throughput of quality models, one row per model config.

FLOPs are counted by `torch.utils.flop_counter` (a multiply-add counts 2), for one forward pass of one crop.
Latency is the median wall time of a forward pass of `batch_size` crops on the current device, after warm-up.
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import asdict, dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode

from biqa.models.base import QualityModel


@dataclass
class ModelCost:
    model: str
    backbone: str
    parameters: int
    decoder_parameters: int
    gflops: float
    latency_ms: float
    images_per_s: float
    device: str
    batch_size: int
    crop_size: int


def count_parameters(net: QualityModel) -> tuple[int, int]:
    total = sum(p.numel() for p in net.parameters())
    return total, sum(p.numel() for p in net.decoder_parameters())


def _inputs(net: QualityModel, batch: int, size: int, device: torch.device):
    images = torch.rand(batch, 3, size, size, device=device)
    depth = torch.rand(batch, 1, size, size, device=device) if getattr(net, "uses_depth", False) else None
    return images, depth


@torch.no_grad()
def measure(net: QualityModel, model: str, backbone: str, batch_size: int = 1, crop_size: int = 224,
            warmup: int = 2, repeats: int = 5, device: str | torch.device = "cpu") -> ModelCost:
    device = torch.device(device)
    net = net.to(device).eval()
    total, decoder = count_parameters(net)
    with FlopCounterMode(display=False) as counter:
        net(*_inputs(net, 1, crop_size, device))
    images, depth = _inputs(net, batch_size, crop_size, device)
    times = []
    for i in range(warmup + repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        net(images, depth)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if i >= warmup:
            times.append(time.perf_counter() - start)
    latency = statistics.median(times)
    return ModelCost(model, backbone, total, decoder, counter.get_total_flops() / 1e9, latency * 1e3,
                     batch_size / latency, str(device), batch_size, crop_size)


def format_table(rows: list[ModelCost]) -> str:
    header = f"{'model':<22}{'backbone':<44}{'params':>14}{'decoder':>13}{'GFLOPs':>9}{'ms/batch':>10}{'img/s':>9}"
    lines = [header, "-" * len(header)]
    for r in rows:
        lines.append(f"{r.model:<22}{r.backbone:<44}{r.parameters:>14,}{r.decoder_parameters:>13,}"
                     f"{r.gflops:>9.2f}{r.latency_ms:>10.1f}{r.images_per_s:>9.1f}")
    return "\n".join(lines)


def to_json(rows: list[ModelCost]) -> str:
    return json.dumps([asdict(r) for r in rows])
