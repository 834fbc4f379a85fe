"""`biqa-report study=NAME [the study's overrides]`: write a study's table (Markdown, CSV, PNG) from the
records that exist, without running anything."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from biqa.cli.sweep import parser, run_train_multirun


def main(argv: Sequence[str] | None = None) -> int:
    args = parser(__doc__.splitlines()[0]).parse_args(argv)
    return run_train_multirun([*args.overrides, "hydra.sweeper.action=report"])


if __name__ == "__main__":
    sys.exit(main())
