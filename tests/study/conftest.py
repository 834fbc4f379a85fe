"""Study tests run real (tiny) jobs through the CLI path, with every output under the test's temp folder."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.conftest import TINY

# Seconds-long jobs: the suite's tiny setting (a random tiny backbone on 36 synthetic 48 px images).
STUDY_TINY = list(TINY)


@pytest.fixture(scope="session")
def study_cache(tmp_path_factory) -> Path:
    """One synthetic-data cache for every study test (generation is deterministic)."""
    return tmp_path_factory.mktemp("study_cache")


@pytest.fixture
def tiny_study_args(tmp_path: Path, study_cache: Path) -> list[str]:
    """Arguments of a two-variant, one-seed study of TINY jobs rooted in the test's temp folder."""
    return [
        "study=smoke",
        "study.seeds=[0]",
        f"paths.root_dir={tmp_path}",
        f"paths.cache_dir={study_cache}",
        *STUDY_TINY,
    ]
