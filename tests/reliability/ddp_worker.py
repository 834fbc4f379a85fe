"""One rank of a two-process DDP job that trains many configurations in turn (tests/reliability/test_ddp_models.py).

Started twice, as torchrun would, with RANK / LOCAL_RANK / WORLD_SIZE / MASTER_ADDR / MASTER_PORT set: Lightning
then joins these processes instead of launching its own, and the gloo process group made for the first run
serves every later one, so the cost of starting processes is paid once for all the configurations.

    python -m tests.reliability.ddp_worker CASES.json CACHE_DIR OUT_DIR

CASES.json maps a case name to its overrides. Each rank appends one JSON line per case to OUT_DIR/rank<R>.jsonl:
the training batches it ran and a digest of the model's parameters before and after training.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
import traceback
from datetime import timedelta
from pathlib import Path

import lightning as L
import torch
from omegaconf import open_dict
from tests.conftest import compose_in

from biqa.engine import train


def parameter_digest(module: torch.nn.Module) -> str:
    digest = hashlib.sha256()
    for name, parameter in module.named_parameters():
        digest.update(name.encode())
        digest.update(parameter.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


class TrainingRecord(L.Callback):
    """What the test compares across ranks: the batches trained on and the parameters before and after."""

    def __init__(self) -> None:
        self.record: dict = {"batches": 0}

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.record["before"] = parameter_digest(pl_module)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # The DistributedDataParallel wrapper, when the module has trainable parameters.
        self.record["strategy_finds_unused"] = bool(getattr(trainer.strategy.model, "find_unused_parameters", False))

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args) -> None:
        self.record["batches"] += 1

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.record["after"] = parameter_digest(pl_module)
        self.record["world_size"] = trainer.world_size
        self.record["global_step"] = trainer.global_step


RECORDS: list[TrainingRecord] = []


def training_record() -> TrainingRecord:
    RECORDS.append(TrainingRecord())
    return RECORDS[-1]


def main(cases_file: str, cache: str, out: str) -> int:
    torch.set_num_threads(1)
    rank = int(os.environ["RANK"])
    # A case that fails on one rank leaves the other waiting in a collective: fail in minutes, not gloo's 30.
    torch.distributed.init_process_group("gloo", timeout=timedelta(seconds=120))
    log = Path(out) / f"rank{rank}.jsonl"
    for name, overrides in json.loads(Path(cases_file).read_text()).items():
        cfg = compose_in(Path(out) / name, Path(cache), "train", overrides)
        with open_dict(cfg):
            cfg.callbacks.training_record = {"_target_": f"{__name__}.training_record"}
        entry = {"case": name}
        started = time.perf_counter()
        try:
            train(cfg)
            entry.update(RECORDS[-1].record)
        except Exception:  # the test reports the case and its traceback
            entry["error"] = traceback.format_exc()
        entry["seconds"] = round(time.perf_counter() - started, 2)
        with log.open("a") as stream:
            stream.write(json.dumps(entry) + "\n")
        if "error" in entry:
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
