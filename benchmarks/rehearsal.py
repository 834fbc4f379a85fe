"""Rehearse every paper recipe, and every ablation study's variants under its model's recipe, at full size on
this CPU (`debug=rehearsal`: random weights, miniature datasets in the real layouts, 2 steps, validation,
test, result record), one process at a time, and time each.

    python benchmarks/rehearsal.py [--part experiments|ablations|all] [--only SUBSTRING] [--threads 1]

Experiments are every file of conf/experiment/; ablation runs are the variants of conf/study/*_ablation.yaml
with `experiment=<model>_koniq` (the README's paper-setting ablation command, each variant as one run), then
every conf/ablation/<model>/ file that no study names, under the same recipe.
Prints a Markdown table (wall seconds, passed) and a JSON line (with the peak memory of the largest run). The unit suite runs the cheap part of each (tests/test_rehearsal.py).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from omegaconf import OmegaConf

from biqa.config import CONFIG_DIR

CONF = Path(CONFIG_DIR)
REPO = CONF.parent
# The paper setting of each ablation study: its model's recipe on the dataset the papers report first.
ABLATION_RECIPES = {"lifeiqa": "lifeiqa_koniq", "dgiqa": "dgiqa_koniq", "bfrd": "bfrd_koniq", "mfenet": "mfenet_koniq"}
# What an experiment needs named on the command line before it can run at all.
REQUIRED = {"cross_dataset": ["data=koniq10k", "data.test_dataset.reader=livec"]}


def experiment_runs() -> list[tuple[str, list[str]]]:
    runs = []
    for path in sorted((CONF / "experiment").glob("*.yaml")):
        runs.append((path.stem, [f"experiment={path.stem}", *REQUIRED.get(path.stem, [])]))
    return runs


def ablation_runs() -> list[tuple[str, list[str]]]:
    """Each study variant under its model's recipe, then each `ablation=<model>/<name>` file no study names
    (the defaults spelt out, the alternative encoders and overlaps) under the same recipe."""
    runs, named = [], set()
    for model, recipe in ABLATION_RECIPES.items():
        study = OmegaConf.load(CONF / "study" / f"{model}_ablation.yaml")
        for variant, overrides in study.variants.items():
            runs.append((f"{recipe} / {variant}", [f"experiment={recipe}", *overrides]))
            named.update(item.removeprefix("ablation=") for item in overrides if item.startswith("ablation="))
    for model, recipe in ABLATION_RECIPES.items():
        for path in sorted((CONF / "ablation" / model).glob("*.yaml")):
            if f"{model}/{path.stem}" not in named:
                runs.append((f"{recipe} / ablation={model}/{path.stem}",
                             [f"experiment={recipe}", f"ablation={model}/{path.stem}"]))
    return runs


def rehearse(name: str, overrides: list[str], work: Path, threads: int) -> dict:
    run_dir = work / "runs" / name.replace(" / ", "__").replace("/", "-").replace("=", "-")
    command = [sys.executable, "-m", "biqa.cli.train", *overrides, "debug=rehearsal", f"threads={threads}",
               f"paths.root_dir={work}", f"paths.cache_dir={work / 'cache'}", f"hydra.run.dir={run_dir}",
               "resume=false"]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(REPO / "src")}
    start = time.perf_counter()
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    record = run_dir / "result.json"
    shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)  # full-size weights: hundreds of MB a run
    last_line = (result.stderr.strip().splitlines() or ["(no output)"])[-1][:160]
    error = "" if result.returncode == 0 else f"exit {result.returncode}: {last_line}"
    return {"wall_s": round(wall, 1), "ok": result.returncode == 0 and record.exists(), "error": error}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=["experiments", "ablations", "all"], default="experiments")
    parser.add_argument("--only", default="", help="rehearse only the runs whose name contains this")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--work", type=Path, help="folder for runs and caches (default: a temporary one)")
    args = parser.parse_args()
    runs = (experiment_runs() if args.part in ("experiments", "all") else []) + \
           (ablation_runs() if args.part in ("ablations", "all") else [])
    runs = [(name, overrides) for name, overrides in runs if args.only in name]
    work = args.work or Path(tempfile.mkdtemp(prefix="biqa-rehearsal-"))
    rows = []
    for name, overrides in runs:
        row = {"run": name, "overrides": overrides, **rehearse(name, overrides, work, args.threads)}
        rows.append(row)
        print(f"{name}: {'ok' if row['ok'] else 'FAILED ' + row['error']} in {row['wall_s']} s", flush=True)
    print("\n| run | wall s | passed |\n|---|---:|---|")
    for row in rows:
        print(f"| `{row['run']}` | {row['wall_s']} | {'yes' if row['ok'] else 'no: ' + row['error']} |")
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(json.dumps({"benchmark": "rehearsal", "threads": args.threads, "runs": len(rows),
                      "passed": sum(row["ok"] for row in rows), "peak_child_rss_mb": round(peak_mb),
                      "wall_s": {row["run"]: row["wall_s"] for row in rows}}))
    sys.exit(0 if all(row["ok"] for row in rows) else 1)


if __name__ == "__main__":
    main()
