"""First check on a machine with GPUs (not run in CI): a few mixed-precision training steps of every model at
its paper's setting (paper backbone, random weights, 224 px crops), DDP over all visible GPUs when there is
more than one; peak memory and training images/s per model. Prints a table and one JSON line.

    python benchmarks/gpu_smoke.py                        # every model, every visible GPU
    python benchmarks/gpu_smoke.py --models lifeiqa dgiqa --batch-size 16 --compile
    python benchmarks/gpu_smoke.py --device cpu --tiny    # the same code path on a CPU, tiny models (a test)
    python benchmarks/gpu_smoke.py --device cpu --models bfrd dgiqa --backbone efficientnet_lite0_offline \
        --size 384 --threads 1 --precision 32-true bf16-mixed   # study=biq2021's setting, both precisions

Each step is what biqa-train does: the model's loss terms on random crops and scores, backward, AdamW, under
`trainer.precision=mixed`'s rule (bf16 where the GPU has it, else fp16 with a gradient scaler; float32 on a CPU)
or under each `--precision` given, one row per model and precision, measured in turns.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from biqa.config import CONFIG_DIR, without_pretrained_weights
from biqa.engine import mixed_precision

PAPER_BACKBONES = {"pooled": "swin_base", "transformer_decoder": "swin_base", "lifeiqa": "swin_base",
                   "dgiqa": "swin_tiny", "bfrd": "swin_tiny", "mfenet": "resnet50"}
PRECISIONS = ("32-true", "bf16-mixed", "16-mixed")
# A random, frozen distortion encoder for BFRD: its trained weights do not change the cost of a step.
EXTRA = {"bfrd": ["model.net.allow_untrained_encoder=true", "model.net.distortion_checkpoint=null"]}
TINY = {"dgiqa": ["model.net.bridge_channels=[8,8,16,16]", "model.net.num_heads=2", "model.net.stack_channels=16",
                  "model.net.grid=3"],
        "bfrd": ["model.net.width=32", "model.net.num_heads=2"],
        "lifeiqa": ["model.net.embed_dim=32", "model.net.num_heads=2", "model.net.depth=1"],
        "transformer_decoder": ["model.net.embed_dim=32", "model.net.num_heads=2", "model.net.depth=1",
                                "model.net.ffn_hidden_dim=64"]}


def backbone_of(model: str, args) -> str:
    return "test_efficientnet" if args.tiny else args.backbone or PAPER_BACKBONES[model]


def build(model: str, backbone: str, tiny: bool):
    overrides = [f"model={model}", f"model/backbone={backbone}",
                 *EXTRA.get(model, []), *(TINY.get(model, []) if tiny else []),
                 f"paths.root_dir={Path.cwd()}", f"paths.output_dir={Path.cwd()}"]
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    return instantiate(without_pretrained_weights(cfg.model.net)), instantiate(cfg.model.losses)


def step_loss(net, losses, images, depth, scores):
    output = net(images, depth) if depth is not None else net(images)
    batch = {"score": scores}
    total = output.score.new_zeros(())
    for term in losses.values():
        value = None if term is None else term(output, batch)
        if value is not None:
            total = total + term.weight * value
    return total


def run_model(model: str, precision: str, args, rank: int, world: int, device: torch.device) -> dict:
    net, losses = build(model, backbone_of(model, args), args.tiny)
    net = net.to(device).train()
    if args.compile:
        net.compile()
    trainable = [p for p in net.parameters() if p.requires_grad]
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(
            net, device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=getattr(net, "has_conditional_parameters", False))
    optimizer = torch.optim.AdamW(trainable, lr=1e-4)
    if precision == "mixed":
        precision = mixed_precision("gpu" if device.type == "cuda" else "cpu")
    dtype = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}.get(precision)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    size = 32 if args.tiny else args.size
    images = torch.rand(args.batch_size, 3, size, size, device=device)
    uses_depth = getattr(getattr(net, "module", net), "uses_depth", False)
    depth = torch.rand(args.batch_size, 1, size, size, device=device) if uses_depth else None
    scores = torch.rand(args.batch_size, device=device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    timings = []
    for _ in range(args.warmup + args.steps):
        started = time.perf_counter()
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            loss = step_loss(net, losses, images, depth, scores)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        timings.append(time.perf_counter() - started)
        if not torch.isfinite(loss):
            raise RuntimeError(f"{model}: the loss is not finite ({loss.item()})")
    seconds = sorted(timings[args.warmup:])[len(timings[args.warmup:]) // 2]
    return {"model": model, "backbone": backbone_of(model, args), "size": size, "threads": torch.get_num_threads(),
            "precision": precision, "processes": world, "batch_per_process": args.batch_size,
            "peak_memory_gib": round(torch.cuda.max_memory_allocated(device) / 2**30, 2) if device.type == "cuda" else None,
            "images_per_s": round(world * args.batch_size / seconds, 2), "loss": round(float(loss), 4)}


def worker(rank: int, world: int, args, results) -> None:
    torch.set_num_threads(args.threads or (max(1, (os.cpu_count() or 1) // world) if args.device == "cpu" else 1))
    device = torch.device(args.device, rank) if args.device == "cuda" else torch.device("cpu")
    if world > 1:
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ.setdefault("MASTER_PORT", "29533")
        dist.init_process_group("nccl" if args.device == "cuda" else "gloo", rank=rank, world_size=world)
    if args.device == "cuda":
        torch.cuda.set_device(device)
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    for model in args.models:
        for precision in args.precision:
            row = run_model(model, precision, args, rank, world, device)
            if rank == 0:
                results.append(row)
    if world > 1:
        dist.destroy_process_group()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=list(PAPER_BACKBONES))
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--processes", type=int, default=None, help="DDP processes (default: every visible GPU; 1 on CPU)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--backbone", default=None, help="one backbone config for every model (default: each paper's)")
    parser.add_argument("--size", type=int, default=224, help="crop size in pixels")
    parser.add_argument("--precision", nargs="+", default=["mixed"], choices=["mixed", *PRECISIONS],
                        help="mixed: bf16 or fp16 on a GPU by what it supports, float32 on a CPU")
    parser.add_argument("--threads", type=int, default=None, help="torch threads per process (default: cores / processes)")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--compile", action="store_true", help="torch.compile each model (model.compile)")
    parser.add_argument("--tiny", action="store_true", help="test backbones and 32 px crops: checks the script runs")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no GPU visible: run on a GPU machine, or check the script with --device cpu --tiny")
    world = args.processes or (torch.cuda.device_count() if args.device == "cuda" else 1)
    if world > 1:
        with mp.Manager() as manager:
            results = manager.list()
            mp.spawn(worker, args=(world, args, results), nprocs=world, join=True)
            rows = list(results)
    else:
        rows = []
        worker(0, 1, args, rows)
    device_name = torch.cuda.get_device_name(0) if args.device == "cuda" else "cpu"
    threads = rows[0]["threads"] if rows else None
    print(f"\n{device_name}, {world} process(es) of {threads} thread(s), batch {args.batch_size} per process, "
          f"compile={args.compile}\n")
    print("| model | backbone | px | precision | peak memory (GiB) | train images/s |")
    print("|---|---|---:|---|---:|---:|")
    for row in rows:
        print(f"| {row['model']} | {row['backbone']} | {row['size']} | {row['precision']} | {row['peak_memory_gib']} "
              f"| {row['images_per_s']} |")
    print(json.dumps({"benchmark": "gpu_smoke", "device": device_name, "processes": world, "rows": rows}))


if __name__ == "__main__":
    main()
