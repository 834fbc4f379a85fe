"""`biqa-report study=NAME [the study's overrides]`: write a study's table (Markdown, CSV, PNG) from the
records that exist, without running anything."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from biqa.cli.sweep import parser
from biqa.study.launch import prepare


def main(argv: Sequence[str] | None = None) -> int:
    args = parser(__doc__.splitlines()[0]).parse_args(argv)
    study = prepare(args.overrides)
    files = study.report()
    print(files.markdown.read_text())
    print(f"report: {files.markdown}, {files.summary_csv}, {files.runs_csv}, {files.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
