from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf
from PIL import Image
from skimage.metrics import structural_similarity

import biqa.data.datasets.synthetic as synthetic
from biqa.data.datasets.distortions import DISTORTION_NAMES, LEVELS
from biqa.data.datasets.synthetic import StructuralSimilarity, SyntheticIQA, cut_references

SMALL = {
    "num_references": 2,
    "image_size": 48,
    "levels": 2,
    "distortions": ["gaussian_blur", "gaussian_noise", "jpeg"],
    "workers": 1,
}
CONFIG = Path(__file__).parents[3] / "conf" / "data" / "synthetic.yaml"


def file_hashes(records) -> dict[str, str]:
    return {r.image_id: hashlib.sha256(r.path.read_bytes()).hexdigest() for r in records}


def count_generations(monkeypatch) -> list[int]:
    calls: list[int] = []
    generate = SyntheticIQA._generate

    def counted(self, folder):
        calls.append(1)
        return generate(self, folder)

    monkeypatch.setattr(SyntheticIQA, "_generate", counted)
    return calls


@pytest.fixture(scope="module")
def small_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("small")
    SyntheticIQA(root, **SMALL)()
    return root


@pytest.fixture
def small(small_root, tmp_path) -> SyntheticIQA:
    """A built copy of the SMALL dataset that the test may damage."""
    shutil.copytree(small_root, tmp_path, dirs_exist_ok=True)
    return SyntheticIQA(tmp_path, **SMALL)


@pytest.fixture(scope="module")
def full_tiny(tmp_path_factory):
    """Every distortion at every level on two 48 px references."""
    dataset = SyntheticIQA(tmp_path_factory.mktemp("full"), num_references=2, image_size=48, workers=1)
    return dataset, dataset()


def test_references_interleave_photos_and_never_repeat():
    references = cut_references(48, 3)
    assert [r.name for r in references] == ["astronaut_r1", "chelsea_r1", "coffee_r1"]
    default = cut_references(192, 32)
    assert len({r.name for r in default}) == 32
    assert len({r.pixels.tobytes() for r in default}) == 32
    assert all(r.pixels.shape == (192, 192, 3) and r.pixels.dtype == np.uint8 for r in default)
    with pytest.raises(ValueError, match="reference squares"):
        cut_references(192, 500)


def test_records_carry_references_labels_and_scores(full_tiny):
    dataset, data = full_tiny
    assert len(data) == 2 * len(DISTORTION_NAMES) * LEVELS
    assert {r.reference_id for r in data.records} == {"astronaut_r1", "chelsea_r1"}
    assert data.distortion_types == DISTORTION_NAMES
    assert {r.distortion_type for r in data.records} == set(range(len(DISTORTION_NAMES)))
    assert {r.distortion_level for r in data.records} == set(range(1, LEVELS + 1))
    assert data.has_references and data.has_distortion_labels and data.official_splits == {}
    assert len({r.image_id for r in data.records}) == len(data)
    assert data.scale.low == 0.0 and data.scale.high == 1.0 and data.scale.name == "SSIM"
    for record in data.records:
        assert 0.0 <= record.score <= 1.0 and record.raw_score == record.score
        assert data.scale.normalise(record.raw_score) == pytest.approx(record.score)
        assert record.path.is_file() and record.path.parent.parent.parent == data.root
    name = DISTORTION_NAMES.index
    for distortion in DISTORTION_NAMES:
        by_level = {
            level: np.mean(
                [
                    r.score
                    for r in data.records
                    if r.distortion_type == name(distortion) and r.distortion_level == level
                ]
            )
            for level in (1, LEVELS)
        }
        assert by_level[1] > by_level[LEVELS], distortion


def test_score_is_ssim_of_the_stored_png_against_its_reference(full_tiny):
    _, data = full_tiny
    references = {r.name: r.pixels for r in cut_references(48, 2)}
    for record in data.records[::7]:
        pixels = np.asarray(Image.open(record.path).convert("RGB"))
        assert pixels.shape == (48, 48, 3)
        expected = StructuralSimilarity(references[record.reference_id])(pixels)
        assert record.score == pytest.approx(min(max(expected, 0.0), 1.0), abs=1e-6)


def test_ssim_matches_scikit_image():
    reference, other = (r.pixels for r in cut_references(64, 2))
    noisy = np.clip(reference + np.random.default_rng(0).normal(0, 25, reference.shape), 0, 255).astype(
        np.uint8
    )
    for distorted in (noisy, other):
        expected = structural_similarity(
            distorted,
            reference,
            data_range=255,
            channel_axis=2,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
        )
        assert StructuralSimilarity(reference)(distorted) == pytest.approx(expected, abs=1e-5)


def test_builds_in_different_folders_are_byte_identical(small_root, tmp_path):
    first = SyntheticIQA(small_root, **SMALL)()
    second = SyntheticIQA(tmp_path, **SMALL)()
    assert first.root.parent != second.root.parent
    assert [(r.image_id, r.score) for r in first.records] == [(r.image_id, r.score) for r in second.records]
    assert file_hashes(first.records) == file_hashes(second.records)


def test_seed_moves_only_the_random_distortions(small):
    base = small
    reseeded = SyntheticIQA(small.root, **{**SMALL, "seed": 1})
    assert base.cache_dir != reseeded.cache_dir
    hashes, rehashes = file_hashes(base().records), file_hashes(reseeded().records)
    assert hashes.keys() == rehashes.keys()
    for image_id, digest in hashes.items():
        assert (digest == rehashes[image_id]) == ("gaussian_noise" not in image_id), image_id


def test_second_call_reuses_the_cache(small, monkeypatch):
    first = small()
    mtimes = {r.image_id: r.path.stat().st_mtime_ns for r in first.records}
    calls = count_generations(monkeypatch)
    again = SyntheticIQA(small.root, **SMALL)()
    assert calls == []
    assert again.records == first.records
    assert {r.image_id: r.path.stat().st_mtime_ns for r in again.records} == mtimes


def test_changed_settings_build_a_new_cache(small, monkeypatch):
    calls = count_generations(monkeypatch)
    one_level = SyntheticIQA(small.root, **{**SMALL, "levels": 1})()
    assert calls == [1]
    assert len(one_level) == 2 * 3 * 1 and {r.distortion_level for r in one_level.records} == {1}


def _delete_image(folder: Path) -> None:
    next((folder / "images").rglob("*.png")).unlink()


def _truncate_image(folder: Path) -> None:
    image = next((folder / "images").rglob("*.png"))
    image.write_bytes(image.read_bytes()[:100])


def _truncate_manifest(folder: Path) -> None:
    manifest = folder / "manifest.csv"
    manifest.write_text("".join(manifest.read_text().splitlines(keepends=True)[:-3]))


def _drop_completion(folder: Path) -> None:
    (folder / "complete.json").unlink()


def _garble_completion(folder: Path) -> None:
    (folder / "complete.json").write_text('{"settings": {')


def _other_settings(folder: Path) -> None:
    completion = json.loads((folder / "complete.json").read_text())
    completion["settings"]["seed"] = 99
    (folder / "complete.json").write_text(json.dumps(completion))


@pytest.mark.parametrize(
    "damage",
    [
        _delete_image,
        _truncate_image,
        _truncate_manifest,
        _drop_completion,
        _garble_completion,
        _other_settings,
    ],
)
def test_damaged_cache_is_detected_and_rebuilt(small, monkeypatch, damage):
    dataset = small
    original = dataset()
    hashes = file_hashes(original.records)
    damage(dataset.cache_dir)
    assert dataset._cache_problem(dataset.cache_dir) is not None
    calls = count_generations(monkeypatch)
    rebuilt = dataset()
    assert calls == [1]
    assert rebuilt.records == original.records and file_hashes(rebuilt.records) == hashes
    assert dataset._cache_problem(dataset.cache_dir) is None


def test_killed_build_leaves_nothing_that_looks_complete(tmp_path, monkeypatch):
    distort = synthetic.distort
    done: list[int] = []

    def dies_midway(*args):
        if len(done) == 5:
            raise KeyboardInterrupt
        done.append(1)
        return distort(*args)

    monkeypatch.setattr(synthetic, "distort", dies_midway)
    dataset = SyntheticIQA(tmp_path, **SMALL)
    with pytest.raises(KeyboardInterrupt):
        dataset()
    assert not dataset.cache_dir.exists()
    assert list(tmp_path.glob(".partial-*")) == []
    monkeypatch.setattr(synthetic, "distort", distort)
    assert len(dataset()) == 12


def test_leftovers_of_killed_builds_are_cleared_once_stale(tmp_path):
    dataset = SyntheticIQA(tmp_path, **SMALL)
    stale = tmp_path / f".partial-{dataset.cache_key}-123-dead"
    recent = tmp_path / f".partial-{dataset.cache_key}-456-live"
    for leftover in (stale, recent):
        (leftover / "images").mkdir(parents=True)
    day_ago = time.time() - 2 * 24 * 3600
    os.utime(stale, (day_ago, day_ago))
    dataset()
    assert not stale.exists() and recent.exists()


def test_a_build_finishing_second_keeps_the_first(small):
    dataset = small
    first = dataset()
    marker = (dataset.cache_dir / "complete.json").stat().st_mtime_ns
    dataset._build()
    assert (dataset.cache_dir / "complete.json").stat().st_mtime_ns == marker
    assert dataset().records == first.records
    assert list(dataset.root.glob(".partial-*")) == []


def test_grey_references_skip_distortions_that_cannot_act_on_them(tmp_path, monkeypatch):
    monkeypatch.setattr(synthetic, "COLOUR_SOURCES", {})
    data = SyntheticIQA(
        tmp_path, num_references=2, image_size=48, distortions=["desaturate", "gaussian_noise"], workers=1
    )()
    assert {r.reference_id for r in data.records} == {"camera_r1", "brick_r1"}
    assert len(data) == 2 * LEVELS
    assert {r.distortion_type for r in data.records} == {1}
    assert data.distortion_types == ["desaturate", "gaussian_noise"]


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"distortions": ["vignette"]}, "distortions"),
        ({"distortions": ["jpeg", "jpeg"]}, "distortions"),
        ({"distortions": []}, "distortions"),
        ({"levels": 0}, "levels"),
        ({"levels": LEVELS + 1}, "levels"),
        ({"quality_measure": "psnr"}, "quality_measure"),
        ({"image_size": 16}, "image_size"),
        ({"quality_measure": "ms_ssim", "image_size": 96}, "ms_ssim"),
        ({"num_references": 0}, "num_references"),
        ({"workers": 0}, "workers"),
    ],
)
def test_bad_settings_are_refused(tmp_path, settings, message):
    with pytest.raises(ValueError, match=message):
        SyntheticIQA(tmp_path, **settings)


def test_config_builds_the_dataset_under_the_cache_dir(tmp_path):
    from hydra.utils import instantiate

    data = OmegaConf.load(CONFIG)
    config = OmegaConf.create({"paths": {"cache_dir": str(tmp_path)}, "data": {"dataset": data.dataset}})
    dataset = instantiate(config.data.dataset)
    assert isinstance(dataset, SyntheticIQA) and dataset.root == tmp_path / "synthetic"


@pytest.mark.slow
def test_multiscale_ssim_scores(tmp_path):
    data = SyntheticIQA(
        tmp_path,
        num_references=1,
        image_size=176,
        levels=3,
        distortions=["gaussian_blur"],
        quality_measure="ms_ssim",
    )()
    scores = [r.score for r in sorted(data.records, key=lambda r: r.distortion_level)]
    assert data.scale.name == "MS_SSIM" and all(0.0 <= s <= 1.0 for s in scores)
    assert scores[0] > scores[1] > scores[2]


@pytest.mark.slow
def test_worker_processes_change_no_byte(small_root, tmp_path):
    serial = SyntheticIQA(small_root, **SMALL)()
    parallel = SyntheticIQA(tmp_path, **{**SMALL, "workers": 2})()
    assert parallel.root.name == serial.root.name
    assert [(r.image_id, r.score) for r in parallel.records] == [
        (r.image_id, r.score) for r in serial.records
    ]
    assert file_hashes(parallel.records) == file_hashes(serial.records)
