"""Runs killed with SIGKILL at random points (seeded) of every phase, with and without loader workers and
under DDP, resume to exactly the metrics of the run that never stopped (benchmarks/kill_anywhere.py's
harness on the tiny setting)."""

from __future__ import annotations

import importlib.util
import random
import sys
from pathlib import Path

import pytest
from tests.reliability.conftest import REPO, RUN

pytestmark = pytest.mark.slow


def load_harness():
    spec = importlib.util.spec_from_file_location("kill_anywhere", REPO / "benchmarks" / "kill_anywhere.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("kill_anywhere", module)
    spec.loader.exec_module(module)
    return module


harness = load_harness()

# 4 training references x 6 images in batches of 4: 6 steps per epoch, 12 in all; last.ckpt every 4 steps
# and after each validation. Dropout makes the result depend on the random generators too.
SETTING = [o for o in RUN if not o.startswith(("data.num_workers=", "data.persistent_workers="))] + [
    "model.net.dropout=0.3", "trainer.max_epochs=2", "callbacks.step_checkpoint.every_n_train_steps=4",
    "data.persistent_workers=true", "threads=1"]


def kill_points(events: list[dict], seed: int) -> dict[str, int]:
    """One event drawn at random from each phase: training before the first checkpoint, training resumed
    from a mid-epoch checkpoint, training resumed from an epoch's last checkpoint (taken after validation),
    validation, test, and a checkpoint save."""
    def train_after_checkpoint(epoch_end: bool) -> list[dict]:
        chosen, last_checkpoint = [], None
        for event in events:
            if event["phase"] == "checkpoint":
                last_checkpoint = event
            elif event["phase"] == "train" and last_checkpoint is not None:
                if (last_checkpoint["epoch"] < event["epoch"]) == epoch_end:
                    chosen.append(event)
        return chosen

    first_checkpoint = next(e["event"] for e in events if e["phase"] == "checkpoint")
    last_epoch = max(e["epoch"] for e in events if e["phase"] == "validate")
    phases = {
        "train before the first checkpoint": [e for e in events if e["phase"] == "train" and e["event"] < first_checkpoint],
        "train mid-epoch": train_after_checkpoint(epoch_end=False),
        "train after an epoch end": train_after_checkpoint(epoch_end=True),
        # The last epoch's: its step checkpoint would fall on the epoch's last batch, which Lightning resumes
        # from as if the validation after it had run (biqa.lit.callbacks.StepCheckpoint skips that one).
        "validate": [e for e in events if e["phase"] == "validate" and e["epoch"] == last_epoch],
        "test": [e for e in events if e["phase"] == "test"],
        "checkpoint save": [e for e in events if e["phase"] == "checkpoint"],
    }
    draw = random.Random(seed)
    return {phase: draw.choice(candidates)["event"] for phase, candidates in phases.items()}


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> tuple[Path, list[str], dict[str, float], list[dict]]:
    folder = tmp_path_factory.mktemp("kill_anywhere")
    overrides = [*SETTING, f"paths.cache_dir={folder / 'cache'}"]
    harness.run_reference([*overrides, "data.num_workers=0"], folder / "reference")
    events = harness.read_events(folder / "reference.jsonl")
    return folder, overrides, harness.read_metrics(folder / "reference"), events


# Each phase with 0 loader workers and with 2 persistent ones (the same data and metrics: the order and the
# crops are functions of the seed and the epoch).
@pytest.mark.parametrize("phase, workers", [
    ("train before the first checkpoint", "data.num_workers=0"),
    ("train mid-epoch", "data.num_workers=2"),
    ("train after an epoch end", "data.num_workers=0"),
    ("validate", "data.num_workers=2"),
    ("test", "data.num_workers=0"),
    ("checkpoint save", "data.num_workers=0"),
])
def test_a_run_killed_in_any_phase_resumes_to_the_uninterrupted_metrics(reference, phase, workers):
    folder, overrides, metrics, events = reference
    kill_at = kill_points(events, seed=0)[phase]
    name = f"{phase.replace(' ', '_')}-{workers[-1]}"
    row = harness.kill_and_resume([*overrides, workers], folder / name, metrics, kill_at=kill_at)
    assert row["killed_exit"] == -9, row
    assert row["resumed_exit"] == 0, (folder / f"{name}.log").read_text()[-3000:]
    assert row["phase"].startswith(phase.split()[0]), row
    if phase == "train before the first checkpoint":
        assert row["resumed_from"] == "start"
    else:
        assert row["resumed_from"] != "start"
    assert set(row["metrics"]) == set(metrics) and any(name.startswith("test/") for name in metrics)
    assert row["metrics"] == metrics  # exactly


@pytest.fixture(scope="module")
def ddp_reference(tmp_path_factory) -> tuple[Path, list[str], dict[str, float], list[dict]]:
    folder = tmp_path_factory.mktemp("kill_anywhere_ddp")
    overrides = [*SETTING, "data.num_workers=0", "trainer=ddp_cpu", f"paths.cache_dir={folder / 'cache'}"]
    harness.run_reference(overrides, folder / "reference")
    return folder, overrides, harness.read_metrics(folder / "reference"), harness.read_events(folder / "reference.jsonl")


@pytest.mark.parametrize("ranks", ["1", "0,1"])
def test_a_ddp_run_killed_on_one_or_both_ranks_resumes_to_the_uninterrupted_metrics(ddp_reference, ranks):
    """Rank 0 is the process a scheduler starts; a rank left alive is killed after a grace period, as a
    scheduler ends what remains of a job."""
    folder, overrides, metrics, events = ddp_reference
    name = f"killed_ranks_{ranks.replace(',', '_')}"
    row = harness.kill_and_resume(overrides, folder / name, metrics, kill_at=kill_points(events, seed=1)["train mid-epoch"],
                                  ranks=ranks)
    assert row["resumed_exit"] == 0, (folder / f"{name}.log").read_text()[-3000:]
    assert row["phase"].startswith("train") and row["resumed_from"] != "start", row
    assert row["metrics"] == metrics
