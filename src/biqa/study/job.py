"""What every study job runs, under any launcher: train (or test a checkpoint on another dataset), plot the
predictions, log to W&B and close the W&B run, record the outcome. A failing job records its error and
returns, so that one bad variant does not stop the rest of the study."""

from __future__ import annotations

import json
import logging
import sys
import threading
import traceback
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from lightning.fabric.utilities.rank_zero import rank_zero_only
from omegaconf import DictConfig, OmegaConf, open_dict

from biqa.plots import scatter_plot
from biqa.run_folder import PREDICTIONS_FILE, RESULT_FILE, SCATTER_FILE, read_json, write_state
from biqa.study.records import record_fingerprint

log = logging.getLogger(__name__)

STOP_REQUESTED = threading.Event()


def request_stop(signum: int, frame) -> None:
    """SIGTERM to a sweep running its jobs in-process: no further job starts. A job in training stops at its
    next step (Lightning raises on SIGTERM and calls this handler too); one in any other phase finishes it.
    A job that crashes meanwhile (e.g. its loader workers got the same signal) counts as interrupted, not
    failed, so the next run resumes it from its last checkpoint."""
    log.warning("signal %d: the study stops; re-run the same command to resume", signum)
    STOP_REQUESTED.set()


def run_study_job(cfg: DictConfig) -> dict[str, float] | None:
    job = cfg.study_job
    if STOP_REQUESTED.is_set():
        raise SystemExit(f"{job.name}: not started, the study was asked to stop")
    output_dir = Path(cfg.paths.output_dir)
    record = read_json(output_dir / RESULT_FILE)
    if record is not None and record_fingerprint(record) == job.fingerprint:
        log.info("%s: finished before, skipped", job.name)
        return record["metrics"]
    is_rank_zero = rank_zero_only.rank == 0
    if is_rank_zero:
        write_state(output_dir, "running", fingerprint=job.fingerprint, name=job.name,
                    overrides=list(HydraConfig.get().overrides.task))
    try:
        name_wandb_run(cfg)
        if job.kind == "cross_eval":
            metrics = test_on_other_dataset(cfg, output_dir)
        else:
            from biqa.engine import train

            metrics = train(cfg)
        if is_rank_zero:
            scatter = output_dir / SCATTER_FILE
            if job.kind == "cross_eval" or not scatter.exists():
                scatter = scatter_plot(output_dir / PREDICTIONS_FILE, scatter, title=job.name)
            log_to_wandb(metrics, scatter)
            write_state(output_dir, "finished")
        return metrics
    except Exception as error:
        if STOP_REQUESTED.is_set():
            raise SystemExit(f"{job.name}: interrupted ({type(error).__name__}: {error})") from error
        log.exception("%s failed", job.name)
        if is_rank_zero:
            write_state(output_dir, "failed", error=f"{type(error).__name__}: {error}",
                        traceback=traceback.format_exc())
        return None
    finally:
        finish_wandb_run()


def name_wandb_run(cfg: DictConfig) -> None:
    """A study's runs share a W&B group (the study id); job_type is the variant; tags say what varies."""
    loggers = cfg.get("logger") or {}
    if "wandb" not in loggers:
        return
    job = cfg.study_job
    choices = HydraConfig.get().runtime.choices
    tags = [f"model:{choices.get('model')}", f"ablation:{choices.get('ablation') or 'none'}",
            f"dataset:{job.dataset}", f"split:{job.seed}", f"variant:{job.variant}"]
    if job.kind == "cross_eval":
        tags.append(f"test_dataset:{job.test_dataset}")
    if job.grid:
        tags.append(f"grid:{job.grid}")
    with open_dict(cfg):
        loggers.wandb.group = job.study
        loggers.wandb.job_type = job.variant
        loggers.wandb.name = job.name
        loggers.wandb.tags = tags


def log_to_wandb(metrics: dict[str, float], scatter: Path | None) -> None:
    wandb = sys.modules.get("wandb")
    if wandb is None or wandb.run is None:
        return
    if scatter is not None:
        wandb.run.log({"test/scatter": wandb.Image(str(scatter))})
    wandb.run.summary.update(metrics)


def finish_wandb_run() -> None:
    """Lightning's WandbLogger leaves its run open; in a sequential sweep the next job would reuse it."""
    wandb = sys.modules.get("wandb")
    if wandb is not None and wandb.run is not None:
        wandb.finish()


def test_on_other_dataset(cfg: DictConfig, output_dir: Path) -> dict[str, float]:
    """Tests the checkpoint of a finished training job on the whole of another dataset."""
    from biqa.engine import evaluate

    metrics = evaluate(cfg)
    trained = read_json(output_dir.parents[1] / RESULT_FILE) or {}
    record: dict[str, Any] = {
        "metrics": metrics,
        "checkpoint": cfg.ckpt_path,
        "parameters": trained.get("parameters"),
        "provenance": {**(trained.get("provenance") or {}), "tested_on": cfg.study_job.test_dataset},
        "config": OmegaConf.to_container(cfg, resolve=True),
    }
    if rank_zero_only.rank == 0:
        (output_dir / RESULT_FILE).write_text(json.dumps(record, indent=1, default=str))
    return metrics
