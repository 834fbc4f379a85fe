"""A checkpoint write killed half-way leaves the previous checkpoint whole under its name."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap

import torch
from tests.reliability.conftest import REPO, RUN, cli_env

from biqa.engine import build_trainer
from biqa.lit.checkpoint_io import AtomicCheckpointIO


def test_a_write_killed_half_way_leaves_the_previous_checkpoint_whole(tmp_path):
    last = tmp_path / "checkpoints" / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint({"global_step": 4, "weights": torch.arange(10.0)}, last)
    previous = last.read_bytes()

    # A process that writes the next checkpoint and is killed (SIGKILL: no cleanup) half-way through.
    torn_write = textwrap.dedent(f"""
        import os, signal, torch
        from pathlib import Path
        from biqa.lit import checkpoint_io

        def write_half_then_die(stream):
            torch.save({{"global_step": 8, "weights": torch.zeros(100_000)}}, stream)
            stream.truncate(stream.tell() // 2)
            stream.flush()
            os.kill(os.getpid(), signal.SIGKILL)

        checkpoint_io.write_atomically(Path({str(last)!r}), write_half_then_die)
    """)
    killed = subprocess.run([sys.executable, "-c", torn_write], cwd=REPO, env=cli_env(), capture_output=True)
    assert killed.returncode == -signal.SIGKILL, killed.stderr

    assert last.read_bytes() == previous
    assert torch.load(last, weights_only=True)["global_step"] == 4
    AtomicCheckpointIO().save_checkpoint({"global_step": 8}, last)  # the next save replaces the leftover
    assert torch.load(last, weights_only=True)["global_step"] == 8
    assert sorted(p.name for p in last.parent.iterdir()) == ["last.ckpt"]


def test_trainers_write_checkpoints_atomically(compose_config, tmp_path):
    trainer = build_trainer(compose_config("train", RUN), tmp_path)
    assert isinstance(trainer.strategy.checkpoint_io, AtomicCheckpointIO)
