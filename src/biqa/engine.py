"""Build a run from its config, train and test it, evaluate a checkpoint; write the run's result record."""

from __future__ import annotations

import json
import logging
import subprocess
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from lightning.fabric.utilities.rank_zero import rank_zero_only
from lightning.pytorch.callbacks import LearningRateMonitor
from lightning.pytorch.plugins import CheckpointIO
from omegaconf import DictConfig, OmegaConf, open_dict

from biqa.checks import check_compatibility, check_config
from biqa.config import backbone_nodes, without_pretrained_weights
from biqa.data.datasets.miniature import WRITERS, write_miniature
from biqa.data.datasets.readers import READERS
from biqa.data.loading.datamodule import IQADataModule
from biqa.lit.checkpoint_io import AtomicCheckpointIO
from biqa.lit.regression import QualityRegressor, load_checkpoint, load_net_weights, read_checkpoint
from biqa.lit.routing import RoutingRecorder, routers, routing_table
from biqa.models.base import QualityModel
from biqa.plots import scatter_plot
from biqa.run_folder import (
    EVAL_RESULT_FILE,
    PREDICTIONS_FILE,
    RESULT_FILE,
    ROUTING_FILE,
    SCATTER_FILE,
    last_checkpoint,
    read_json,
    write_json,
)

log = logging.getLogger(__name__)

CROSS_DATASET_READER = "biqa.data.datasets.cross_dataset.reader_by_name"


def build_trainer(cfg: DictConfig, output_dir: Path, module: L.LightningModule | None = None) -> L.Trainer:
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c is not None]
    if module is not None and not getattr(module, "uses_optimizer", True):
        # A closed-form fit has no learning rate to monitor, and Lightning refuses the monitor without one.
        callbacks = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]
    loggers = [instantiate(c) for c in (cfg.get("logger") or {}).values() if c is not None]
    if module is not None and routers(module):
        callbacks.append(RoutingRecorder())  # test-time only: which experts each test image's tokens went to
    options = {}
    if cfg.trainer.get("precision") == "mixed":
        options["precision"] = mixed_precision(cfg.trainer.get("accelerator"))
    if cfg.trainer.get("strategy") == "ddp" and getattr(getattr(module, "net", None), "has_conditional_parameters", False):
        # Only then: the search for the parameters a step did not use walks the autograd graph every step.
        options["strategy"] = "ddp_find_unused_parameters_true"
    resolved = OmegaConf.to_container(cfg, resolve=True)
    for logger in loggers:  # the resolved config is each run's config (W&B filters and groups runs by it)
        logger.log_hyperparams(resolved)
    # Checkpoints written through a temporary file renamed into place: a kill never tears last.ckpt.
    plugins = [instantiate(p) if isinstance(p, DictConfig) else p for p in cfg.trainer.get("plugins") or []]
    if not any(isinstance(p, CheckpointIO) for p in plugins):
        plugins.append(AtomicCheckpointIO())
    return instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False, default_root_dir=str(output_dir),
                       plugins=plugins, **options)


def mixed_precision(accelerator: str | None) -> str:
    """`trainer.precision=mixed`: bf16 autocast on a GPU that supports it (no loss scaling, fp32's range),
    else fp16 with loss scaling; full precision without a GPU, where autocast rarely pays."""
    if accelerator == "cpu" or not torch.cuda.is_available():
        return "32-true"
    return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"


def speed_up(net: QualityModel, model_cfg: DictConfig) -> QualityModel:
    """`model.channels_last` (NHWC weights; the module feeds NHWC crops) and `model.compile` (torch.compile, in
    place, so checkpoints keep the plain parameter names)."""
    if model_cfg.get("channels_last"):
        net = net.to(memory_format=torch.channels_last)
    if model_cfg.get("compile"):
        net.compile()
    return net


def train(cfg: DictConfig) -> dict[str, float]:
    """Trains, selects the checkpoint on the validation part, tests it and writes the run's record; with
    `fit=false`, tests `ckpt_path` as it is instead (e.g. on another dataset)."""
    if not cfg.get("fit", True):
        return test_checkpoint(cfg)
    output_dir = Path(cfg.paths.output_dir)
    check_config(cfg)
    if cfg.get("rehearsal"):
        cfg = rehearsal_config(cfg)
    if cfg.get("threads"):
        torch.set_num_threads(cfg.threads)
    if cfg.get("matmul_precision"):
        torch.set_float32_matmul_precision(cfg.matmul_precision)
    L.seed_everything(cfg.seed, workers=True)
    datamodule: IQADataModule = instantiate(cfg.data)
    net: QualityModel = instantiate(cfg.model.net)
    if cfg.model.get("init_from"):
        load_net_weights(net, read_checkpoint(cfg.model.init_from), f"model.init_from={cfg.model.init_from}")
    losses = instantiate(cfg.model.losses)
    check_compatibility(net, datamodule, losses, cfg.model)
    tell_losses_the_score_range(losses, datamodule)
    if cfg.get("feature_cache"):
        from biqa.data.derived.feature_cache import use_feature_cache

        datamodule = use_feature_cache(datamodule, net, cfg.feature_cache)
    module = build_module(cfg.model, speed_up(net, cfg.model), losses, cfg.optim, cfg)
    if cfg.model.get("channels_last"):
        module.input_memory_format = torch.channels_last
    trainer = build_trainer(cfg, output_dir, module)

    resume_from = cfg.get("ckpt_path") or (last_checkpoint(output_dir) if cfg.get("resume") else None)
    if resume_from:
        log.info("resuming from %s", resume_from)
    trainer.fit(module, datamodule=datamodule, ckpt_path=resume_from)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
    checkpointing = trainer.checkpoint_callback
    if checkpointing is not None and checkpointing.monitor and checkpointing.best_model_score is not None:
        metrics[f"{checkpointing.monitor}_best"] = float(checkpointing.best_model_score)

    best = getattr(checkpointing, "best_model_path", "") or None
    if cfg.get("test"):
        trainer.test(module, datamodule=datamodule, ckpt_path=best, weights_only=False)
        metrics.update({k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("test/")})
        if trainer.is_global_zero:
            write_predictions(module, datamodule, output_dir / PREDICTIONS_FILE)
            write_routing(trainer, datamodule, output_dir / ROUTING_FILE)
            scatter_plot(output_dir / PREDICTIONS_FILE, output_dir / SCATTER_FILE, title=output_dir.name)
    record = {
        "metrics": metrics,
        "checkpoint": best,
        "num_images": {part: len(getattr(datamodule.split, part)) for part in ("train", "val", "test")},
        "parameters": parameter_counts(net),
        "provenance": provenance(cfg, datamodule),
        "config": OmegaConf.to_container(cfg, resolve=True),
    }
    if trainer.is_global_zero:
        (output_dir / RESULT_FILE).write_text(json.dumps(record, indent=1, default=str))
        print_metrics(metrics, "test" if cfg.get("test") else "val", output_dir)
    return metrics


def tell_losses_the_score_range(losses, datamodule: IQADataModule) -> None:
    """Loss terms on the raw score scale (model.losses.score.scale=raw) learn the training dataset's range."""
    if any(term is not None and term.needs_score_range for term in losses.values()):
        scale = datamodule.load_records().scale
        for term in filter(None, losses.values()):
            term.use_score_range(abs(scale.high - scale.low))


def rehearsal_config(cfg: DictConfig) -> DictConfig:
    """`debug=rehearsal`: the run's config on miniature stand-ins of its datasets (written in their real
    layouts, once, under rehearsal.root), with random weights and offline depth maps; changed in place, so
    that the result record names the miniatures."""
    rehearsal = cfg.rehearsal
    with open_dict(cfg):
        datasets = [cfg.data.dataset]
        if cfg.data.get("test_dataset") is not None:
            datasets.append(cfg.data.test_dataset)
        for dataset in datasets:
            reader = dataset.get("_target_")
            if reader == CROSS_DATASET_READER:
                reader = READERS[dataset.reader]
            if reader in WRITERS:
                folder = Path(rehearsal.root) / f"{reader.rsplit('.', 1)[-1]}_{rehearsal.images}_seed{cfg.seed}"
                dataset.root = str(write_miniature(reader, folder, images=rehearsal.images, seed=cfg.seed))
        if cfg.data.get("depth") is not None:
            cfg.data.depth = rehearsal.depth
        cfg.model.net = without_pretrained_weights(cfg.model.net)
    return cfg


def build_module(model_cfg: DictConfig, net: QualityModel, losses, optim, run_config) -> QualityRegressor:
    """The model config's `module` (a LightningModule with its own training, e.g. the ridge probe's closed-form
    fit), else the regression module every decoder shares."""
    module_cfg = model_cfg.get("module")
    if module_cfg is None:
        return QualityRegressor(net, losses, optim=optim, run_config=run_config)
    module = instantiate(module_cfg, _partial_=True, _convert_="all")
    return module(net=net, losses=losses, optim=optim, run_config=run_config)


def evaluate(cfg: DictConfig) -> dict[str, float]:
    """Rebuild the checkpoint's model (and, unless `data=` is given, its data and split) and test it."""
    module, stored = load_checkpoint(cfg.ckpt_path)
    data_cfg = cfg.data if cfg.get("data") is not None else stored.data
    if cfg.get("data") is None and cfg.get("dataset_root"):
        data_cfg.dataset.root = cfg.dataset_root
    output_dir = Path(cfg.paths.output_dir)
    # The split file and any skipped-rows list go to this evaluation's folder, not the training run's.
    datamodule: IQADataModule = instantiate(data_cfg, run_dir=str(output_dir))
    trainer = build_trainer(cfg, output_dir, module)
    datamodule.setup("test")
    part = cfg.get("part", "test")
    loader = {"test": datamodule.test_dataloader, "val": datamodule.val_dataloader}.get(part)
    if loader is None:
        raise ValueError(f"part '{part}' is unknown; choose test or val (data.split.strategy=all tests on every image)")
    trainer.test(module, dataloaders=loader())
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("test/")}
    if cfg.get("logistic_fit"):
        from biqa.metrics import fitted_plcc

        predictions = module.test_predictions
        metrics["test/plcc_logistic"] = fitted_plcc(predictions["pred"], predictions["score"])
    if trainer.is_global_zero:
        write_predictions(module, datamodule, output_dir / PREDICTIONS_FILE)
        scatter_plot(output_dir / PREDICTIONS_FILE, output_dir / SCATTER_FILE, title=output_dir.name)
        record = {"metrics": metrics, "checkpoint": str(cfg.ckpt_path), "part": part,
                  "num_images": len(getattr(datamodule.split, part)), "config": OmegaConf.to_container(cfg, resolve=True)}
        (output_dir / EVAL_RESULT_FILE).write_text(json.dumps(record, indent=1, default=str))
        write_routing(trainer, datamodule, output_dir / ROUTING_FILE)
        print_metrics(metrics, "test", output_dir)
    return metrics



def import_authors(cfg: DictConfig) -> Path:
    """biqa-import-authors: an authors' Life-IQA / DGIQA file -> a biqa checkpoint (network weights and the
    composed run config, with the authors' test-time crops as its evaluation crops)."""
    from biqa.models.authors import import_authors_checkpoint

    overrides = [f"+data/eval_crops=authors_{cfg.authors_model}", *cfg.overrides]
    net, run_cfg, imported = import_authors_checkpoint(cfg.input, cfg.authors_model, cfg.allow_pickle, overrides)
    output = Path(cfg.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    description = (f"the authors' {cfg.authors_model} weights from {Path(cfg.input).name} "
                   f"({imported['layout']}, {imported['authors_keys']} keys)")
    torch.save({"state_dict": {f"net.{k}": v for k, v in net.state_dict().items()},
                "biqa_config": OmegaConf.to_container(run_cfg, resolve=True),
                "imported_from": imported, "description": description}, output)
    architecture = ", ".join(f"{k} {v}" for k, v in imported["architecture"].items() if v is not None)
    print(f"imported {description}: {architecture}; every key used once -> {output}", flush=True)
    return output


def test_checkpoint(cfg: DictConfig) -> dict[str, float]:
    """Tests `ckpt_path` on the configured data and writes a run record beside the evaluation's, carrying the
    parameter counts and provenance of the run that trained the checkpoint."""
    if not cfg.get("ckpt_path"):
        raise ValueError("fit=false tests a trained checkpoint: give ckpt_path=PATH (a biqa-train checkpoint)")
    metrics = evaluate(cfg)
    trained = read_json(Path(cfg.ckpt_path).parents[1] / RESULT_FILE) or {}
    record = {"metrics": metrics, "checkpoint": cfg.ckpt_path, "parameters": trained.get("parameters"),
              "provenance": {**(trained.get("provenance") or {}), "tested_on": _data_choice()},
              "config": OmegaConf.to_container(cfg, resolve=True)}
    if rank_zero_only.rank == 0:
        write_json(Path(cfg.paths.output_dir) / RESULT_FILE, record)
    return metrics


def _data_choice() -> str | None:
    return HydraConfig.get().runtime.choices.get("data") if HydraConfig.initialized() else None


def write_predictions(module: QualityRegressor, datamodule: IQADataModule, path: Path) -> None:
    """One row per test image: its name, MOS and prediction (normalised scale), and its distortion type
    (by name) and level where the dataset has them."""
    predictions = module.test_predictions
    if not predictions:
        return
    dataset = datamodule.records
    records = dataset.records
    labelled = dataset.has_distortion_labels
    lines = ["image,score,prediction" + (",distortion_type,distortion_level" if labelled else "")]
    for index, score, pred in zip(predictions["index"].tolist(), predictions["score"].tolist(),
                                  predictions["pred"].tolist(), strict=True):
        record = records[index]
        line = f"\"{record.image_id}\",{score:.6f},{pred:.6f}"
        if labelled:
            kind = dataset.distortion_types[record.distortion_type] if record.distortion_type is not None else ""
            level = record.distortion_level if record.distortion_level is not None else ""
            line += f",\"{kind}\",{level}"
        lines.append(line)
    path.write_text("\n".join(lines) + "\n")


def write_routing(trainer: L.Trainer, datamodule: IQADataModule, path: Path) -> None:
    """The test images' expert routing (`biqa.lit.routing`), for models with a mixture of experts."""
    recorder = next((c for c in trainer.callbacks if isinstance(c, RoutingRecorder)), None)
    if recorder is None or not trainer.is_global_zero:
        return
    table = routing_table(recorder, [record.image_id for record in datamodule.records.records])
    if not table.empty:
        table.to_csv(path, index=False, float_format="%.5f")


def parameter_counts(net: QualityModel) -> dict[str, int]:
    """For the study tables: every parameter, the trainable ones, and those outside the backbones."""
    return {"total": sum(p.numel() for p in net.parameters()),
            "trainable": sum(p.numel() for p in net.parameters() if p.requires_grad),
            "decoder": sum(p.numel() for p in net.decoder_parameters())}


def provenance(cfg: DictConfig, datamodule: IQADataModule) -> dict[str, Any]:
    weights = sorted({str(node.get("weights")) for node in backbone_nodes(cfg.model)})
    depth = getattr(datamodule.depth_provider, "name", None)
    return {"git_commit": _git_commit(), "backbone_weights": weights, "depth_provider": depth,
            "torch": torch.__version__, "dataset": datamodule.records.name if datamodule.records else None}


def _git_commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True,
                              cwd=Path(__file__).parent).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def print_metrics(metrics: dict[str, float], stage: str, output_dir: Path) -> None:
    names = ("srcc", "plcc", "plcc_logistic", "krcc", "rmse")
    values = "  ".join(f"{n.upper()} {metrics[f'{stage}/{n}']:.4f}" for n in names if f"{stage}/{n}" in metrics)
    print(f"\n{stage} metrics: {values}\nrun folder: {output_dir}", flush=True)
