"""Wall time of a decoder study on a frozen backbone, with and without the feature cache.

Runs conf/study/frozen_decoders.yaml twice through the study sweeper (`biqa-train -m study=...`) (local, one job after the other):
once with `feature_cache.mode=images` (the same fixed crops, the frozen backbone run at every step: what a
study costs without the cache) and once with the cache (features computed once, then read by every variant
and split). The synthetic data are generated before the clock starts; the cache build is inside it.
Both runs must give the same test metrics within `--tolerance` (float16 storage and batch composition
move them slightly). Prints a table and one JSON line.

    python benchmarks/sweep_cache.py                      # 4 variants (--variants) x 3 splits x 10 epochs
    python benchmarks/sweep_cache.py --epochs 2 --seeds 1 # a quick look

Exactly the variants `--variants` names run (any of the study's; the others are dropped from it), and the
table and JSON list them with the number of jobs each mode ran.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from hydra.utils import instantiate
from omegaconf import OmegaConf

from biqa.cli.sweep import run_train_multirun
from biqa.config import CONFIG_DIR
from biqa.study.launch import load
from biqa.study.report import collect_runs

VARIANTS = ("pooled", "pooled_mlp", "transformer_decoder", "lifeiqa")
STUDY_FILE = Path(CONFIG_DIR) / "study" / "frozen_decoders.yaml"


def study_variants() -> list[str]:
    return list(OmegaConf.load(STUDY_FILE).variants)


def study_arguments(args: argparse.Namespace, root: Path, mode: str) -> list[str]:
    """The study's command line: `args.variants` only, each on `args.seeds` splits."""
    seeds = ",".join(str(s) for s in range(args.seeds))
    dropped = [f"~study.variants.{variant}" for variant in study_variants() if variant not in args.variants]
    return [*dropped,
        "study=frozen_decoders",
        f"study.seeds=[{seeds}]",
        f"paths.root_dir={root / mode}",
        f"paths.cache_dir={root / 'data'}",
        # `++`: these nodes exist only in the jobs (the study's common overrides add the feature cache).
        f"++feature_cache.dir={root / 'features'}",
        f"++feature_cache.mode={mode}",
        f"++feature_cache.views={args.eval_crops}",
        f"++data.dataset.num_references={args.references}",
        f"++data.dataset.image_size={args.crop + 32}",
        "++data.dataset.distortions=[gaussian_blur,gaussian_noise,jpeg,contrast_decrease]",
        "++data.dataset.levels=3",
        f"data.train_crops.size={args.crop}",
        f"data.eval_crops.size={args.crop}",
        f"data.train_crops.count={args.train_crops}",
        f"data.eval_crops.count={args.eval_crops}",
        "data.num_workers=0",
        "++data.persistent_workers=false",
        f"trainer.max_epochs={args.epochs}",
        "~callbacks.progress_bar",
        "++trainer.enable_progress_bar=false",
        "++trainer.enable_model_summary=false",
        f"threads={args.threads}",
        f"model/backbone={args.backbone}",
        *decoder_widths(args),
    ]


def decoder_widths(args: argparse.Namespace) -> list[str]:
    """Decoder widths of the chosen variants: the paper's 384 by default; smaller ones keep a CPU run short."""
    widths = {
        "transformer_decoder": "study.variants.transformer_decoder=['model=transformer_decoder',"
        f"'model.net.embed_dim={args.embed_dim}','model.net.ffn_hidden_dim={args.embed_dim * 5 // 2}',"
        f"'model.net.num_heads={args.heads}']",
        "lifeiqa": f"study.variants.lifeiqa=['model=lifeiqa','model.net.embed_dim={args.embed_dim}',"
        f"'model.net.num_heads={args.heads}']",
    }
    return [override for variant, override in widths.items() if variant in args.variants]


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--references", type=int, default=8)
    parser.add_argument("--crop", type=int, default=224)
    parser.add_argument("--train-crops", type=int, default=2)
    parser.add_argument("--eval-crops", type=int, default=8)
    parser.add_argument("--embed-dim", type=int, default=384, help="transformer_decoder and lifeiqa width")
    parser.add_argument("--heads", type=int, default=6)
    parser.add_argument("--backbone", default="efficientnet_lite0_offline", help="a conf/model/backbone choice")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads per job")
    parser.add_argument("--tolerance", type=float, default=0.02)
    parser.add_argument("--root", type=Path, default=None, help="work folder (default: a new temp folder)")
    return parser


def main() -> None:
    options = parser()
    args = options.parse_args()
    available = study_variants()
    unknown = sorted(set(args.variants) - set(available))
    if unknown:
        options.error(f"--variants {' '.join(unknown)}: not in {STUDY_FILE.name}; choose from {' '.join(available)}")
    root = args.root or Path(tempfile.mkdtemp(prefix="sweep_cache_"))

    def arguments(mode: str) -> list[str]:
        return study_arguments(args, root, mode)

    instantiate(load(arguments("images")).config.data.dataset)()  # the synthetic data exist before the clock starts

    timings, runs = {}, {}
    for mode in ("images", "features"):
        start = time.perf_counter()
        status = run_train_multirun(arguments(mode))
        timings[mode] = time.perf_counter() - start
        current = load(arguments(mode))
        runs[mode] = collect_runs(current.study_dir, current.jobs)
        if status != 0 or (runs[mode]["status"] != "finished").any():
            raise SystemExit(f"{mode}: not every job finished:\n{runs[mode][['row', 'seed', 'status']]}")
        ran = sorted(set(runs[mode]["variant"]))
        if ran != sorted(args.variants) or len(runs[mode]) != len(args.variants) * args.seeds:
            raise SystemExit(f"{mode}: ran {len(runs[mode])} jobs of variants {ran}, asked for "
                             f"{len(args.variants)} x {args.seeds} of {sorted(args.variants)}")
        print(f"{mode}: {len(runs[mode])} jobs ({', '.join(ran)} x {args.seeds} splits) in {timings[mode]:.1f} s")

    images, features = runs["images"], runs["features"]
    delta_srcc = (images["srcc"] - features["srcc"]).abs()
    delta_plcc = (images["plcc"] - features["plcc"]).abs()
    print(f"\n{'variant':22s} {'seed':>4s} {'SRCC no cache':>14s} {'SRCC cache':>11s} {'|d|':>7s}")
    for i, row in images.iterrows():
        print(f"{row['variant']:22s} {row['seed']:4d} {row['srcc']:14.4f} {features.loc[i, 'srcc']:11.4f} "
              f"{delta_srcc[i]:7.4f}")
    speedup = timings["images"] / timings["features"]
    print(f"\n{'':22s} {'wall s':>10s}\n{'without cache':22s} {timings['images']:10.1f}\n"
          f"{'with cache':22s} {timings['features']:10.1f}\n{'speed-up':22s} {speedup:10.1f}x\n")
    print(json.dumps({
        "benchmark": "sweep_cache", "jobs": len(images), "variants": list(args.variants), "seeds": args.seeds,
        "epochs": args.epochs, "references": args.references, "embed_dim": args.embed_dim, "backbone": args.backbone, "threads": args.threads, "crop": args.crop, "train_crops": args.train_crops, "eval_crops": args.eval_crops,
        "uncached_s": round(timings["images"], 2), "cached_s": round(timings["features"], 2),
        "speedup": round(speedup, 2), "max_abs_delta_srcc": round(float(delta_srcc.max()), 5),
        "max_abs_delta_plcc": round(float(delta_plcc.max()), 5),
        "within_tolerance": bool(delta_srcc.max() <= args.tolerance and delta_plcc.max() <= args.tolerance),
        "target_10x_met": speedup >= 10,
    }))


if __name__ == "__main__":
    main()
