"""What an offline W&B run holds, read from its `run-<id>.wandb` file (a LevelDB-style log of protobuf records
behind a 7-byte header), without a network and without wandb's own reader (gone from wandb 0.2x on)."""

from __future__ import annotations

import json
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path

from wandb.proto import wandb_internal_pb2

BLOCK = 32 * 1024
HEADER = 7  # ":W&B", a 2-byte magic, a version byte
RECORD_HEADER = 7  # crc32, 2-byte length, 1-byte type
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


@dataclass
class OfflineRun:
    run_id: str = ""
    name: str = ""
    group: str = ""
    job_type: str = ""
    tags: list[str] = field(default_factory=list)
    config: dict = field(default_factory=dict)
    history_keys: set[str] = field(default_factory=set)
    finished: bool = False


def _records(path: Path):
    data = path.read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B run file"
    position, pending = HEADER, b""
    while position + RECORD_HEADER <= len(data):
        left_in_block = BLOCK - position % BLOCK
        if left_in_block < RECORD_HEADER:
            position += left_in_block
            continue
        _, length, kind = struct.unpack("<IHB", data[position:position + RECORD_HEADER])
        chunk = data[position + RECORD_HEADER:position + RECORD_HEADER + length]
        position += RECORD_HEADER + length
        if kind == FULL:
            yield chunk
        elif kind == FIRST:
            pending = chunk
        elif kind == MIDDLE:
            pending += chunk
        elif kind == LAST:
            yield pending + chunk
            pending = b""
        else:
            break


def read_offline_run(folder: Path) -> OfflineRun:
    """`folder`: an `offline-run-*` folder."""
    (path,) = folder.glob("run-*.wandb")
    run = OfflineRun()
    for data in _records(path):
        record = wandb_internal_pb2.Record()
        record.ParseFromString(data)
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run.run_id, run.name = record.run.run_id, record.run.display_name
            run.group, run.job_type, run.tags = record.run.run_group, record.run.job_type, list(record.run.tags)
            updates = record.run.config.update
        elif kind == "config":
            updates = record.config.update
        else:
            updates = []
            if kind == "history":
                run.history_keys |= {item.key or "/".join(item.nested_key) for item in record.history.item}
            if kind == "exit":
                run.finished = True
        for item in updates:
            run.config[item.key or "/".join(item.nested_key)] = json.loads(item.value_json)
    return run


def offline_runs(folder: Path, patience: float = 30.0) -> list[OfflineRun]:
    """Every offline W&B run under `folder`, in the order they started. wandb's writer process may still be
    writing a run's file after `wandb.finish()` returned: a run without its exit record is read again until it
    has one or `patience` seconds have passed."""
    runs = []
    for folder_of_run in sorted(p for p in folder.rglob("offline-run-*") if p.is_dir()):
        deadline = time.monotonic() + patience
        run = read_offline_run(folder_of_run)
        while not run.finished and time.monotonic() < deadline:
            time.sleep(0.5)
            run = read_offline_run(folder_of_run)
        runs.append(run)
    return runs
