"""`biqa-sweep study=NAME [study.KEY=...] [train overrides] [hydra/launcher=slurm ...]`: run a study.

Jobs that finished before are skipped, failed and interrupted ones run again (resuming from their last
checkpoint), and the report is written at the end (`biqa-report` writes it on its own).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from biqa.study.launch import prepare, run


def parser(description: str) -> argparse.ArgumentParser:
    result = argparse.ArgumentParser(description=description)
    result.add_argument("overrides", nargs="*", help="study=NAME, study.KEY=VALUE, and overrides for every job")
    return result


def main(argv: Sequence[str] | None = None) -> int:
    arguments = parser(__doc__.splitlines()[0])
    arguments.add_argument("--dry-run", action="store_true", help="list the jobs and their status, run nothing")
    arguments.add_argument("--no-report", action="store_true", help="do not write the report at the end")
    args = arguments.parse_args(argv)
    study = prepare(args.overrides, configure_logging=True)
    counts = run(study, dry_run=args.dry_run)
    print(f"launched {counts.pop('launched')}; now {', '.join(f'{n} {s}' for s, n in sorted(counts.items()))}")
    if not args.dry_run and not args.no_report:
        files = study.report()
        print(files.markdown.read_text())
        print(f"report: {files.markdown}, {files.summary_csv}, {files.runs_csv}, {files.plot}")
    failed = counts.get("failed", 0) + counts.get("interrupted", 0)
    return 1 if failed and not args.dry_run else 0


if __name__ == "__main__":
    sys.exit(main())
