"""The Slurm launcher asks for the warning signal that biqa.lit.slurm answers. The answer itself (checkpoint at
the batch end, requeue, resume to the uninterrupted metrics) is tested on a real cluster
(tests/slurm/test_preemption.py)."""

from __future__ import annotations

from pathlib import Path

import yaml

from biqa.config import CONFIG_DIR


def test_the_slurm_launcher_asks_for_the_warning_signal():
    launcher = yaml.safe_load(Path(CONFIG_DIR, "hydra", "launcher", "slurm.yaml").read_text())
    assert launcher["additional_parameters"]["signal"] == "USR1@90"
