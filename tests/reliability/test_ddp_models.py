"""Every model, in every configuration the configs offer, trains under DDP: two gloo processes
(trainer=ddp_cpu) run two training steps of each `conf/model/*`, each `conf/ablation/*` with its model, MFENet
on a dataset without distortion labels, a frozen and a partly frozen backbone and the frozen-backbone feature
cache and the stored trunk under trained stages; both ranks end each run with the same parameters, changed by
the training.

The two processes are started once, as torchrun would, and train every case in turn (tests/reliability/
ddp_worker.py): one DDP start-up for all of them instead of one per case.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hydra.utils import instantiate
from tests.conftest import TINY, compose_in
from tests.reliability.conftest import REPO, cli_env

from biqa.config import CONFIG_DIR

# Two steps and one validation batch per rank; no test part.
STEPS = ["trainer=ddp_cpu", "+trainer.limit_train_batches=2", "+trainer.limit_val_batches=1", "test=false", "logger=csv"]

# Each model at test size (narrow decoders; the structure each ablation changes is kept), with what it needs
# to run anywhere: depth maps for DGIQA, an untrained (random, frozen) distortion encoder for BFRD (the
# trained one comes from biqa-pretrain-distortion).
AT_TEST_SIZE = {
    "dgiqa": ["data/depth=not_learned_blur_proxy", "model.net.bridge_channels=[8,8,16,16]", "model.net.num_heads=2",
              "model.net.stack_channels=16", "model.net.grid=3"],
    "bfrd": ["model.net.allow_untrained_encoder=true", "model.net.distortion_checkpoint=null", "model.net.width=32",
             "model.net.num_heads=2", "model.net.head_hidden_dim=16"],
    "lifeiqa": ["model.net.embed_dim=32", "model.net.num_heads=2", "model.net.depth=2"],
    "transformer_decoder": ["model.net.embed_dim=32", "model.net.num_heads=2", "model.net.depth=2",
                            "model.net.ffn_hidden_dim=64"],
    "mfenet": ["model.net.high_frequency_width=16", "model.net.distortion_channels=[8,8,16,16,32]",
               "model.net.head_hidden=16"],
}
# The tiny setting but another dataset than the synthetic one (whose own settings it drops).
TINY_CSV = [o for o in TINY if not o.startswith("data.dataset.")]
# DGIQA's depth-encoder ablations put a Swin-S/B beside the RGB backbone; a different tiny backbone (a
# ResNet beside the EfficientNet) keeps their structure, two unlike branches, at test size.
TINY_DEPTH_ENCODER = ["model/backbone@model.depth_backbone=test_resnet"]


def model_cases() -> dict[str, list[str]]:
    cases = {}
    for path in sorted(Path(CONFIG_DIR, "model").glob("*.yaml")):
        cases[f"model={path.stem}"] = [*TINY, f"model={path.stem}", *AT_TEST_SIZE.get(path.stem, [])]
    for path in sorted(Path(CONFIG_DIR, "ablation").glob("*/*.yaml")):
        model, name = path.parent.name, path.stem
        extra = TINY_DEPTH_ENCODER if name.startswith("depth_encoder_") else []
        cases[f"ablation={model}/{name}"] = [*TINY, f"ablation={model}/{name}", *AT_TEST_SIZE.get(model, []), *extra]
    for path in sorted(Path(CONFIG_DIR, "ablation").glob("*.yaml")):  # any model's: with the default one
        # A fifth of the tiny training part is 4 images: 2 per rank, in batches of one image (two crops for BatchNorm).
        cases[f"ablation={path.stem}"] = [*TINY, f"ablation={path.stem}", "data.batch_size=1", "data.train_crops.count=2"]
    return cases


def configuration_cases(unlabelled_manifest: Path) -> dict[str, list[str]]:
    cache, trunk = "+feature_cache=frozen_backbone", "+feature_cache=frozen_trunk"
    return {
        # No distortion-type labels (KonIQ, BIQ2021, ...): MFENet's type classifier gets no gradient.
        "mfenet, data without distortion labels": [
            *TINY_CSV, "model=mfenet", *AT_TEST_SIZE["mfenet"], "data=custom_csv", f"data.dataset.root={unlabelled_manifest.parent}",
            "data.dataset.csv_file=manifest.csv", "data.dataset.path_column=image",
            "data.dataset.score_column=score", "data.dataset.score_range=[0,1]",
            "data.dataset.reference_column=reference"],
        "pooled, frozen backbone": [*TINY, "model=pooled", "model.backbone.freeze=all"],
        "lifeiqa, backbone frozen to stage 2": [*TINY, "model=lifeiqa", *AT_TEST_SIZE["lifeiqa"], "model.backbone.freeze=2"],
        "lifeiqa, feature cache": [*TINY, "model=lifeiqa", *AT_TEST_SIZE["lifeiqa"], cache, "feature_cache.views=2"],
        "mfenet, feature cache": [*TINY, "model=mfenet", *AT_TEST_SIZE["mfenet"], cache, "feature_cache.views=2"],
        "bfrd, feature cache": [*TINY, "model=bfrd", *AT_TEST_SIZE["bfrd"], cache, "feature_cache.views=2"],
        "ridge_probe, feature cache": [*TINY, "model=ridge_probe", cache, "feature_cache.views=2"],
        "ridge_probe, RBF-kernel head": [*TINY, "model=ridge_probe", "model.net.head=rbf_kernel", cache,
                                         "feature_cache.views=2"],
        "pooled, trunk cache": [*TINY, "model=pooled", trunk, "feature_cache.views=4"],
        "lifeiqa, trunk cache": [*TINY, "model=lifeiqa", *AT_TEST_SIZE["lifeiqa"], trunk, "feature_cache.views=4",
                                 "feature_cache.until_stage=2"],
        "mfenet, trunk cache": [*TINY, "model=mfenet", *AT_TEST_SIZE["mfenet"], trunk, "feature_cache.views=4"],
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_two_ranks(cases: dict[str, list[str]], cache: Path, out: Path, timeout: float) -> list[dict[str, dict]]:
    """Both ranks' JSON records of every case, rank 0's first."""
    cases_file = out / "cases.json"
    cases_file.write_text(json.dumps({name: [*overrides, *STEPS] for name, overrides in cases.items()}))
    port = free_port()
    processes = []
    for rank in range(2):
        env = {**cli_env(), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "WORLD_SIZE": "2",
               "RANK": str(rank), "LOCAL_RANK": str(rank), "NODE_RANK": "0"}
        processes.append(subprocess.Popen(
            [sys.executable, "-m", "tests.reliability.ddp_worker", str(cases_file), str(cache), str(out)],
            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    outputs = []
    for process in processes:
        try:
            outputs.append(process.communicate(timeout=timeout)[0])
        except subprocess.TimeoutExpired:
            for other in processes:
                other.kill()
            outputs.append(process.communicate()[0])
    records = []
    for rank in range(2):
        log = out / f"rank{rank}.jsonl"
        lines = log.read_text().splitlines() if log.exists() else []
        records.append({entry["case"]: entry for entry in map(json.loads, lines)})
    failed = {name: entry["error"] for rank_records in records for name, entry in rank_records.items()
              if "error" in entry}
    assert not failed, "\n\n".join(f"{name}:\n{error}" for name, error in failed.items())
    assert all(p.returncode == 0 for p in processes), "\n".join(o[-3000:] for o in outputs)
    return records


@pytest.mark.slow
def test_every_model_and_ablation_trains_two_steps_on_two_ddp_processes(tmp_path, shared_cache):
    # The tiny synthetic set, also read through data=custom_csv as a dataset without type labels.
    records = instantiate(compose_in(tmp_path / "setup", shared_cache, "train", TINY).data.dataset)()
    cases = {**model_cases(), **configuration_cases(records.root / "manifest.csv")}
    assert len(cases) >= 7 + 48 + 3 + 7

    started = time.perf_counter()
    rank0, rank1 = run_two_ranks(cases, shared_cache, tmp_path, timeout=1200)
    print(f"{len(cases)} cases on 2 gloo processes: {time.perf_counter() - started:.0f} s")

    assert set(rank0) == set(rank1) == set(cases)
    for name in cases:
        first, second = rank0[name], rank1[name]
        assert first["world_size"] == 2, name
        assert first["batches"] == second["batches"] == 2, name
        assert first["before"] == second["before"], f"{name}: the ranks started from different parameters"
        assert first["after"] == second["after"], f"{name}: the ranks' parameters diverged"
        assert first["after"] != first["before"], f"{name}: training changed nothing"
    # The unused-parameter search runs only for the model whose head depends on the batch's labels.
    searching = {name for name, entry in rank0.items() if entry["strategy_finds_unused"]}
    assert searching and all("mfenet" in name for name in searching)
    assert "ablation=mfenet/no_distortion_aware" not in searching
