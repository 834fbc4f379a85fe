"""Study tests run real (tiny) jobs through the CLI path, with every output under the test's temp folder."""

from __future__ import annotations

from pathlib import Path

import pytest

# Seconds-long jobs: a random tiny backbone on 36 synthetic 48 px images, one epoch.
STUDY_TINY = [
    "model/backbone=test_efficientnet",
    "++data.dataset.num_references=6",
    "++data.dataset.image_size=48",
    "++data.dataset.distortions=[gaussian_blur,gaussian_noise,jpeg]",
    "++data.dataset.levels=2",
    "data.train_crops.size=32",
    "data.eval_crops.size=32",
    "data.eval_crops.count=2",
    "data.batch_size=4",
    "data.num_workers=0",
    "++data.persistent_workers=false",
    "trainer.max_epochs=1",
    "~callbacks.progress_bar",
    "++trainer.enable_progress_bar=false",
    "++trainer.enable_model_summary=false",
]


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
