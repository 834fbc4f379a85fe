"""The caches a run builds (synthetic data, resized images, depth maps, backbone features), killed with
SIGKILL half-way through a build: the next build finishes them and ends with the files of a build that was
never interrupted. What a killed build may leave beside them is only ever under a temporary name."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from tests.reliability.conftest import REPO, cli_env

pytestmark = pytest.mark.slow

KILLER = """
import importlib, os, signal
def kill_on_call(target, calls):
    module_name, attribute = target.split(":")
    owner = importlib.import_module(module_name)
    *path, name = attribute.split(".")
    for part in path:
        owner = getattr(owner, part)
    original, count = getattr(owner, name), [0]
    def wrapped(*args, **kwargs):
        if count[0] == calls:
            os.kill(os.getpid(), signal.SIGKILL)
        count[0] += 1
        return original(*args, **kwargs)
    setattr(owner, name, wrapped)
"""


def build(code: str, kill_on: str | None = None, calls: int = 0) -> int:
    """Runs `code` in a fresh process; with `kill_on` ("module:attribute"), that process kills itself with
    SIGKILL on the `calls`-th call of it (counted from 0). Returns the exit code."""
    script = KILLER + (f"kill_on_call({kill_on!r}, {calls})\n" if kill_on else "") + textwrap.dedent(code)
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=cli_env(), capture_output=True, text=True,
                          timeout=300)
    assert done.returncode in (0, -signal.SIGKILL), done.stderr
    return done.returncode


def files(folder: Path, temporary: tuple[str, ...] = (".tmp", ".partial")) -> dict[str, bytes]:
    """Every file under `folder` by relative path, leaving out temporary names (a kill may leave those)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and not any(t in part for part in p.relative_to(folder).parts for t in temporary)}


def killed_then_resumed_matches_uninterrupted(code: str, tmp_path: Path, kill_on: str, calls: int,
                                               result: str) -> None:
    """`code` builds into `{root}`; the files under `result` (relative to it) after a killed build and a
    re-run equal those of a build never interrupted, and the killed build had not finished."""
    uninterrupted, resumed = tmp_path / "uninterrupted", tmp_path / "resumed"
    assert build(code.format(root=uninterrupted)) == 0
    assert build(code.format(root=resumed), kill_on=kill_on, calls=calls) == -signal.SIGKILL
    partly = files(resumed / result) if (resumed / result).exists() else {}
    expected = files(uninterrupted / result)
    assert len(partly) < len(expected)
    assert build(code.format(root=resumed)) == 0
    assert files(resumed / result) == expected and expected


def write_photos(folder: Path, count: int = 6) -> list[Path]:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    paths = []
    for i in range(count):
        path = folder / f"{i}.png"
        Image.fromarray(rng.integers(0, 256, (40 + 4 * i, 48, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


def test_synthetic_data(tmp_path):
    code = """
        from biqa.data.datasets.synthetic import SyntheticIQA
        SyntheticIQA("{root}", num_references=2, image_size=48, levels=2, workers=1,
                     distortions=["gaussian_blur", "gaussian_noise", "jpeg"])()
    """
    # A build writes into a private folder renamed into place when complete: after a kill the re-run
    # builds the dataset again, and the dataset's folder holds exactly the uninterrupted build's files.
    killed_then_resumed_matches_uninterrupted(code, tmp_path, "biqa.data.datasets.synthetic:distort", 5, ".")


def test_image_cache(tmp_path):
    photos = write_photos(tmp_path / "photos")
    code = f"""
        from biqa.data.loading.cache import ResizedImageCache
        ResizedImageCache("{{root}}", resize=32).prepare({[str(p) for p in photos]!r}, num_workers=1)
    """
    # Entries are renamed into place one by one: the re-run stores only those the killed build had not.
    killed_then_resumed_matches_uninterrupted(code, tmp_path, "biqa.data.loading.cache:decode_resized", 3, "short32-draft")


def test_depth_maps(tmp_path):
    photos = write_photos(tmp_path / "photos")
    code = f"""
        from pathlib import Path
        from biqa.data.derived.depth import NotLearnedDepthFallback
        from biqa.data.datasets.records import ImageRecord
        records = [ImageRecord(Path(p), 0.5, 0.5, Path(p).name) for p in {[str(p) for p in photos]!r}]
        NotLearnedDepthFallback(cache_dir="{{root}}", batch_size=1).prepare(records)
    """
    killed_then_resumed_matches_uninterrupted(
        code, tmp_path, "biqa.data.derived.depth:NotLearnedDepthFallback.estimate", 3, ".")


def test_feature_cache(tmp_path):
    photos = write_photos(tmp_path / "photos")
    code = f"""
        import torch
        from pathlib import Path
        from biqa.data.loading.crops import CropDataset, CropSpec
        from biqa.data.derived.feature_cache import FeatureStore
        from biqa.data.datasets.records import ImageRecord
        from biqa.models.backbones import Backbone
        torch.manual_seed(0)
        backbone = Backbone("test_efficientnet", out_indices=[1, 2])
        records = [ImageRecord(Path(p), 0.5, 0.5, Path(p).name) for p in {[str(p) for p in photos]!r}]
        crops = CropDataset(records, list(range(len(records))), CropSpec(size=32, count=2), train=False)
        FeatureStore.build(Path("{{root}}") / "store", backbone, 2, crops, {{{{"dtype": "float16"}}}}, batch_size=4,
                           num_workers=0, device="cpu")
    """
    # Built in a private folder renamed into place when complete: a kill leaves no store, the re-run builds it.
    killed_then_resumed_matches_uninterrupted(code, tmp_path, "biqa.models.backbones:Backbone.forward", 1, "store")
