"""`biqa-sweep study=NAME [study.KEY=...] [train overrides] [hydra/launcher=slurm ...]`: run a study; the same
as `biqa-train -m study=NAME ...` (the study sweeper, conf/hydra/sweeper/study.yaml).

Jobs that finished before are skipped, failed and interrupted ones run again (resuming from their last
checkpoint), and the report is written at the end (`biqa-report` writes it on its own).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from biqa.cli.train import main as train_main

SWEEPER_FLAGS = {"hydra.sweeper.action": "--dry-run or --status (biqa-report writes the report)",
                 "hydra.sweeper.report": "--no-report", "hydra.sweeper.wait": "--no-wait"}


def parser(description: str) -> argparse.ArgumentParser:
    result = argparse.ArgumentParser(description=description)
    result.add_argument("overrides", nargs="*", help="study=NAME, study.KEY=VALUE, and overrides for every job")
    return result


def run_train_multirun(overrides: Sequence[str]) -> int:
    """`biqa-train -m OVERRIDES` in this process; its exit status."""
    argv = sys.argv
    sys.argv = [argv[0], "-m", *overrides]
    try:
        train_main()
    except SystemExit as stop:
        return stop.code if isinstance(stop.code, int) else 1
    finally:
        sys.argv = argv
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    arguments = parser(__doc__.splitlines()[0])
    arguments.add_argument("--dry-run", action="store_true", help="list the jobs and their status, run nothing")
    arguments.add_argument("--no-report", action="store_true", help="do not write the report at the end")
    arguments.add_argument("--no-wait", action="store_true",
                           help="submit the jobs (hydra/launcher=slurm) and return; --status follows them")
    arguments.add_argument("--status", action="store_true", help="each job's status, with its Slurm state")
    args = arguments.parse_args(argv)
    for override in args.overrides:
        flag = SWEEPER_FLAGS.get(override.split("=")[0].lstrip("+"))
        if flag:
            # The flags' own override comes last and would silently win over this one.
            arguments.error(f"'{override}': biqa-sweep sets this itself; use {flag}")
    action = "dry_run" if args.dry_run else "status" if args.status else "run"
    extra = [f"hydra.sweeper.action={action}"]
    if args.no_report:
        extra.append("hydra.sweeper.report=false")
    if args.no_wait:
        extra.append("hydra.sweeper.wait=false")
    return run_train_multirun([*args.overrides, *extra])


if __name__ == "__main__":
    sys.exit(main())
