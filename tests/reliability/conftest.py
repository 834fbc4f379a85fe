"""What the reliability tests share: a tiny training setting, and running biqa's entry points as programs."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import TINY

REPO = Path(__file__).resolve().parents[2]

# The tiny training setting of every test (it also drops the progress bar).
RUN = list(TINY)


def run_cli(module: str, *overrides: str, timeout: float = 300, check: bool = True, **popen) -> subprocess.CompletedProcess:
    """`python -m biqa.cli.<module> overrides...` from the repository root, one torch thread per process."""
    result = subprocess.run([sys.executable, "-m", f"biqa.cli.{module}", *overrides], cwd=REPO, env=cli_env(),
                            capture_output=True, text=True, timeout=timeout, **popen)
    if check and result.returncode != 0:
        raise AssertionError(f"biqa.cli.{module} exited with {result.returncode}:\n{result.stdout}\n{result.stderr}")
    return result


def cli_env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "src")]),
            "HYDRA_FULL_ERROR": "1"}


def wait_for_marker(marker: Path, process: subprocess.Popen, timeout: float = 300) -> None:
    """Until a paused run (a PauseOnce-style callback) writes `marker`; fails if the run ends or never gets there."""
    deadline = time.monotonic() + timeout
    while not marker.exists():
        assert process.poll() is None, f"the run ended before it reached the marker:\n{process.stderr.read()}"
        assert time.monotonic() < deadline, "the run never reached the step where it writes the marker"
        time.sleep(0.2)
