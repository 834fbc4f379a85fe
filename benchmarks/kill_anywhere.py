"""Kill a training run anywhere, resume it, and compare its metrics with a run that never stopped.

For one `biqa-train` command (its overrides), the harness runs it once uninterrupted, then N times killed
with SIGKILL at a random point (seeded) and started again with the same command, which resumes from the
run's last checkpoint; every metric of each resumed run is compared with the uninterrupted run's.

Kill points (`--mode`):
  step  the k-th event of the run, k uniform over every event of the uninterrupted run: the start of fit
        (before the first step), each training, validation and test batch, each checkpoint save (before
        it is written); the run kills itself there (`KillAt`), on the ranks chosen by `--kill-ranks`;
  time  a time uniform over the uninterrupted run's duration, from outside: anything, including start-up,
        cache building and checkpoint writes; the phase is what the run last reported.
Under DDP (trainer=ddp_cpu) a rank that is not killed is left 30 s to notice and is then killed too, as a
scheduler ends a job's remaining processes.

  python benchmarks/kill_anywhere.py --kills 10 --workers 0 -- trainer.max_epochs=2 callbacks=resumable
Prints a table (kill point, phase, resumed from, max |metric difference|) and one JSON line.
`--reference DIR` compares with an uninterrupted run this harness made before (e.g. with 0 workers, for
kills with 2: the data and metrics do not depend on the worker count).

Measured on this 2-core machine beside other jobs (one uninterrupted main-job run: about 150 s), main job
defaults for 2 epochs, `callbacks.step_checkpoint.every_n_train_steps=10`, threads=1: 10 kills with 0 workers,
10 with 2, 3 under trainer=ddp_cpu killing rank 1 and 2 killing both ranks; every resumed run's metrics equal
the uninterrupted run's exactly. The table and commands are in the README's "Reliability" section.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch

REPO = Path(__file__).resolve().parents[1]
RESUMABLE = ["trainer.deterministic=true", "callbacks=resumable"]
EVENT_FILE = "events.jsonl"


class KillAt(L.Callback):
    """Appends every event of the run (fit start, batches, checkpoint saves) to `trace` (one JSON line each,
    rank 0 only) and, on the ranks in `ranks`, kills its own process with SIGKILL at the start of event number
    `kill_at` (counted from 0 in this process), once: the restarted run finds `trace`'s `.killed` marker."""

    def __init__(self, trace: str, kill_at: int | None = None, ranks: str = "0") -> None:
        self.trace, self.kill_at = Path(trace), kill_at
        self.ranks = {int(rank) for rank in str(ranks).split(",")}
        self.count = 0
        self.marker = self.trace.with_suffix(".killed")

    def event(self, trainer: L.Trainer, phase: str, batch: int | None = None) -> None:
        rank = trainer.global_rank
        if rank == 0:
            record = {"event": self.count, "phase": phase, "epoch": trainer.current_epoch,
                      "step": trainer.global_step, "batch": batch}
            with self.trace.open("a") as stream:
                stream.write(json.dumps(record) + "\n")
        if self.count == self.kill_at and rank in self.ranks and not self.marker.exists():
            self.marker.write_text(f"rank {rank} event {self.count} {phase}\n")
            os.kill(os.getpid(), signal.SIGKILL)
        self.count += 1

    def on_fit_start(self, trainer, pl_module) -> None:
        self.event(trainer, "start")

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.event(trainer, "train", batch_idx)

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        self.event(trainer, "validate", batch_idx)

    def on_test_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        self.event(trainer, "test", batch_idx)

    def on_save_checkpoint(self, trainer, pl_module, checkpoint) -> None:
        self.event(trainer, "checkpoint")


def run_train(overrides: list[str], log_dir: Path, trace: Path, kill_at: int | None = None, ranks: str = "0",
              kill_after_s: float | None = None, timeout: float = 3600) -> dict[str, Any]:
    """One `python -m biqa.cli.train` run in its own session; returns its exit code and wall time."""
    command = [sys.executable, "-m", "biqa.cli.train", *overrides, f"paths.log_dir={log_dir}",
               "+callbacks.kill_at._target_=kill_anywhere.KillAt", f"+callbacks.kill_at.trace={trace}",
               f"+callbacks.kill_at.kill_at={'null' if kill_at is None else kill_at}",
               f"+callbacks.kill_at.ranks='{ranks}'"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HYDRA_FULL_ERROR": "1",
           "PYTHONPATH": os.pathsep.join([str(REPO / "benchmarks"), str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}
    log = (log_dir.parent / f"{log_dir.name}.log").open("a")
    start = time.monotonic()
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        if kill_after_s is not None:
            try:
                process.wait(timeout=kill_after_s)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
        code = process.wait(timeout=timeout)
    finally:
        end_session(process)
        log.close()
    return {"code": code, "seconds": time.monotonic() - start}


def end_session(process: subprocess.Popen, grace_s: float = 30) -> None:
    """What a scheduler does when a job's main process is gone: the others (DDP ranks, loader workers) get
    `grace_s` to exit on their own, then SIGKILL."""
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        try:
            os.killpg(process.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.5)
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def run_folder(log_dir: Path) -> Path:
    (folder,) = (log_dir / "train").iterdir()
    return folder


def read_metrics(log_dir: Path) -> dict[str, float]:
    return json.loads((run_folder(log_dir) / "result.json").read_text())["metrics"]


def checkpoint_position(log_dir: Path) -> str:
    """Where a re-run resumes: the last checkpoint's epoch and step, or the start."""
    runs = log_dir / "train"
    last = next(runs.glob("*/checkpoints/last.ckpt"), None) if runs.exists() else None
    if last is None:
        return "start"
    state = torch.load(last, map_location="cpu", weights_only=False)
    served = state["loops"]["fit_loop"]["state_dict"].get("combined_loader") or [{}]
    return f"epoch {state['epoch']} step {state['global_step']} batch {served[0].get('batches_served', '-')}"


def read_events(trace: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in trace.read_text().splitlines()] if trace.exists() else []


def describe(event: dict[str, Any] | None) -> str:
    if event is None:
        return "start-up"
    where = f"epoch {event['epoch']} step {event['step']}"
    return f"{event['phase']} ({where}" + (f" batch {event['batch']})" if event["batch"] is not None else ")")


def max_difference(reference: dict[str, float], resumed: dict[str, float]) -> float:
    if set(reference) != set(resumed):
        return float("inf")
    return max(abs(reference[name] - resumed[name]) for name in reference)


def kill_anywhere(overrides: list[str], folder: Path, kills: int, seed: int = 0, mode: str = "step",
                  ranks: str = "0", reference_dir: Path | None = None, timeout: float = 3600) -> dict[str, Any]:
    """The uninterrupted run (or the finished one in `reference_dir`, run with the same overrides), then
    `kills` killed-and-resumed runs at seeded random points; one row per kill."""
    folder.mkdir(parents=True, exist_ok=True)
    if reference_dir is None:
        reference_dir = folder / "reference"
        run_reference(overrides, reference_dir, timeout)
    seconds = json.loads(reference_dir.with_suffix(".json").read_text())["seconds"]
    reference = read_metrics(reference_dir)
    events = read_events(reference_dir.with_suffix(".jsonl"))
    draw = random.Random(seed)
    rows = []
    for number in range(kills):
        if mode == "step":
            row = kill_and_resume(overrides, folder / f"kill{number}", reference, kill_at=draw.randrange(len(events)),
                                  ranks=ranks, timeout=timeout)
        else:
            row = kill_and_resume(overrides, folder / f"kill{number}", reference,
                                  kill_after_s=draw.uniform(0, seconds), timeout=timeout)
        rows.append(row)
        print(f"{row['kill_point']:>10} | {row['phase']:<42} | {row['resumed_from']:<28} | {row['max_abs_diff']:.3g}",
              flush=True)
    return {"reference": reference, "reference_seconds": seconds, "rows": rows}


def run_reference(overrides: list[str], log_dir: Path, timeout: float = 3600) -> float:
    """The uninterrupted run, its events traced to `<log_dir>.jsonl`, its wall time in `<log_dir>.json`."""
    run = run_train([*RESUMABLE, *overrides], log_dir, log_dir.with_suffix(".jsonl"), timeout=timeout)
    if run["code"] != 0:
        raise RuntimeError(f"the uninterrupted run failed (exit {run['code']}); see {log_dir}.log")
    log_dir.with_suffix(".json").write_text(json.dumps({"seconds": round(run["seconds"], 1), "overrides": overrides}))
    return run["seconds"]


def kill_and_resume(overrides: list[str], log_dir: Path, reference: dict[str, float], kill_at: int | None = None,
                    ranks: str = "0", kill_after_s: float | None = None, timeout: float = 3600) -> dict[str, Any]:
    """One run killed at event `kill_at` (on `ranks`) or after `kill_after_s` seconds, then the same command
    again; its metrics against `reference`."""
    overrides, trace = [*RESUMABLE, *overrides], log_dir.with_suffix(".jsonl")
    killed = run_train(overrides, log_dir, trace, kill_at=kill_at, ranks=ranks, kill_after_s=kill_after_s,
                       timeout=timeout)
    seen = read_events(trace)
    phase = describe(seen[-1] if seen else None) if killed["code"] != 0 else "finished before the kill"
    resumed_from = checkpoint_position(log_dir)
    resumed = run_train(overrides, log_dir, trace, kill_at=kill_at, ranks=ranks, timeout=timeout)
    metrics = read_metrics(log_dir) if resumed["code"] == 0 else {}
    return {"kill_point": f"event {kill_at}" if kill_at is not None else f"{kill_after_s:.1f} s",
            "phase": phase, "resumed_from": resumed_from, "killed_exit": killed["code"],
            "resumed_exit": resumed["code"], "metrics": metrics,
            "max_abs_diff": max_difference(reference, metrics) if metrics else float("nan")}


def print_table(result: dict[str, Any]) -> None:
    print("\n| kill point | phase | resumed from | max abs metric diff |\n|---|---|---|---|")
    for row in result["rows"]:
        print(f"| {row['kill_point']} | {row['phase']} | {row['resumed_from']} | {row['max_abs_diff']:.3g} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--mode", choices=("step", "time"), default="step")
    parser.add_argument("--workers", type=int, default=0, help="data.num_workers")
    parser.add_argument("--kill-ranks", default="0", help="under DDP: the ranks killed, e.g. 1 or 0,1")
    parser.add_argument("--folder", type=Path, default=REPO / "logs" / "kill_anywhere")
    parser.add_argument("--reference", type=Path, default=None,
                        help="the log_dir of an uninterrupted run of the same command by this harness (its "
                             "<dir>.jsonl beside it), instead of running one; e.g. one with other data.num_workers")
    parser.add_argument("overrides", nargs="*", help="biqa-train overrides (after --)")
    args = parser.parse_args()
    overrides = [f"data.num_workers={args.workers}", "threads=1", *args.overrides]
    result = kill_anywhere(overrides, args.folder, args.kills, args.seed, args.mode, args.kill_ranks, args.reference)
    print_table(result)
    differences = [row["max_abs_diff"] for row in result["rows"]]
    print(json.dumps({"overrides": overrides, "mode": args.mode, "kills": args.kills, "seed": args.seed,
                      "kill_ranks": args.kill_ranks, "reference_seconds": result["reference_seconds"],
                      "max_abs_diff": max(differences, default=0.0),
                      "exact": all(d == 0 for d in differences), "rows": result["rows"]}))


if __name__ == "__main__":
    main()
