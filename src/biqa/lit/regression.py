"""The one LightningModule for quality regression, shared by every decoder.

A batch holds K crops per image. Training treats every crop as a sample of its image's score; evaluation
averages the K crop predictions per image before the metrics, which are computed over the whole split.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch.optim.lr_scheduler import LambdaLR

from biqa.config import without_pretrained_weights
from biqa.data.loading.crops import net_inputs
from biqa.lit.losses import Batch, LossTerm
from biqa.lit.optim import OptimConfig, build_optimizer, lr_factor, parameter_groups
from biqa.metrics import QualityMetrics, fitted_plcc
from biqa.models.base import QualityModel, QualityOutput
from biqa.models.blocks.heads import RBFKernelHead

PER_CROP_KEYS = ("score", "distortion_type", "distortion_level")


class QualityRegressor(L.LightningModule):
    def __init__(
        self,
        net: QualityModel,
        losses: Mapping[str, LossTerm],
        optim: OptimConfig | Mapping[str, Any] | None = None,
        run_config: DictConfig | dict | None = None,
    ) -> None:
        super().__init__()
        self.net = net
        # A term set to null in the config (e.g. by an ablation that removes the head it trains) is dropped.
        self.losses = torch.nn.ModuleDict({name: term for name, term in losses.items() if term is not None})
        if "score" not in self.losses:
            raise ValueError("model.losses needs a 'score' term (e.g. biqa.lit.losses.ScoreLoss)")
        optim = optim if isinstance(optim, OptimConfig) else OptimConfig(**dict(optim or {}))
        self.optim_cfg = optim
        self.run_config = OmegaConf.to_container(run_config, resolve=True) if isinstance(run_config, DictConfig) else run_config
        self.metrics = torch.nn.ModuleDict({"val": QualityMetrics(), "test": QualityMetrics()})
        self.test_predictions: dict[str, torch.Tensor] = {}
        # torch.channels_last with model.channels_last: NHWC crops for an NHWC model.
        self.input_memory_format = torch.contiguous_format

    # -- data -----------------------------------------------------------------------------------------
    def on_after_batch_transfer(self, batch: Batch, dataloader_idx: int) -> Batch:
        return net_inputs(batch)

    def flat_crops(self, batch: Batch) -> tuple[dict[str, Any], int]:
        """The net's inputs for all B*K crops (`images`, `depth`, `features`: whichever the batch has) and K.
        A batch of the feature cache holds the crops' backbone `features` (B, K, C, h, w per stage), or the
        frozen `trunk`'s stored maps (stage -> B, K, C, h, w), from which the backbone's trained stages run."""
        inputs: dict[str, Any] = {}
        for key in ("images", "depth"):
            if key in batch:
                inputs[key] = batch[key].flatten(0, 1)
        if "trunk" in batch:
            stored = {stage: maps.flatten(0, 1).float() for stage, maps in batch["trunk"].items()}
            (backbone,) = self.net.backbone_modules()
            inputs["features"] = backbone.forward_from(stored)
            return inputs, next(iter(batch["trunk"].values())).shape[1]
        if "features" in batch:
            inputs["features"] = [stage.flatten(0, 1).float() for stage in batch["features"]]
            return inputs, batch["features"][0].shape[1]
        return inputs, batch["images"].shape[1]

    def forward_crops(self, batch: Batch) -> tuple[QualityOutput, Batch]:
        """Run the net on all B*K crops; returns the output and the batch's labels repeated per crop."""
        inputs, k = self.flat_crops(batch)
        for key in ("images", "depth"):
            if key in inputs:
                inputs[key] = inputs[key].contiguous(memory_format=self.input_memory_format)
        output = self.net(inputs.pop("images", None), **inputs)
        per_crop = {key: batch[key].repeat_interleave(k) for key in PER_CROP_KEYS if key in batch}
        return output, per_crop

    def per_image_scores(self, batch: Batch) -> torch.Tensor:
        output, _ = self.forward_crops(batch)
        return output.score.float().view(batch["score"].shape[0], -1).mean(dim=1)

    # -- steps ----------------------------------------------------------------------------------------
    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        output, per_crop = self.forward_crops(batch)
        total = output.score.new_zeros(())
        for name, term in self.losses.items():
            value = term(output, per_crop)
            if value is None:
                continue
            total = total + term.weight * value
            self.log(f"train/loss_{name}", value.detach(), on_step=True, on_epoch=True)
        self.log("train/loss", total.detach(), prog_bar=True, on_step=True, on_epoch=True)
        return total

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        self.metrics["val"].update(self.per_image_scores(batch), batch["score"], batch["index"])

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        scores = self.per_image_scores(batch)
        self.metrics["test"].update(scores, batch["score"], batch["index"])

    def on_validation_epoch_end(self) -> None:
        self._log_metrics("val")

    def on_test_epoch_end(self) -> None:
        metric = self.metrics["test"]
        if metric.update_called:
            with metric.sync_context():
                preds, target, index = metric.gathered()
            self.test_predictions = {"index": index.cpu(), "pred": preds.cpu(), "score": target.cpu()}
            # Labelled apart from the raw test/plcc: the cross-dataset convention fits a logistic first.
            self.log("test/plcc_logistic", fitted_plcc(preds, target), sync_dist=False)
        self._log_metrics("test")

    def _log_metrics(self, stage: str) -> None:
        metric = self.metrics[stage]
        if not metric.update_called:
            return
        values = metric.compute()
        for name, value in values.items():
            self.log(f"{stage}/{name}", value, prog_bar=name in ("srcc", "plcc"), sync_dist=False)
        metric.reset()

    def predict_step(self, batch: Batch, batch_idx: int) -> dict[str, torch.Tensor]:
        return {"index": batch["index"], "pred": self.per_image_scores(batch)}

    # -- optimisation ---------------------------------------------------------------------------------
    def configure_optimizers(self):
        optimizer = build_optimizer(parameter_groups(self.net, self.optim_cfg), self.optim_cfg)
        total_steps = max(1, int(self.trainer.estimated_stepping_batches))
        epochs = max(1, self.trainer.max_epochs or 1)
        steps_per_epoch = max(1, total_steps // epochs)
        schedule = LambdaLR(optimizer, lambda step: lr_factor(step, total_steps, steps_per_epoch, self.optim_cfg))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    # -- provenance -----------------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["biqa_config"] = self.run_config
        # The training dataset's score scale, so that biqa-predict can report scores on it (MOS 1-5, 0-100, ...).
        records = getattr(self.trainer.datamodule, "records", None)
        if records is not None:
            checkpoint["biqa_score_scale"] = asdict(records.scale)


def load_checkpoint(path: str | Path) -> tuple[QualityRegressor, DictConfig]:
    """The one way from a biqa checkpoint to a model: the module with its weights (a head-only checkpoint's
    other parts from its config's pretrained weights, see `net_from_checkpoint`) and the checkpoint's config."""
    checkpoint = read_checkpoint(path)
    stored = OmegaConf.create(checkpoint["biqa_config"])
    net = net_from_checkpoint(checkpoint, str(path))
    # No optimizer: a loaded model is evaluated or predicts; resuming training goes through Lightning's ckpt_path.
    return QualityRegressor(net, instantiate(stored.model.losses), run_config=stored), stored


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """A biqa checkpoint: from biqa-train, biqa-import-authors, or a head-only file such as the shipped
    default. Loaded with pickle (its config is a Python object): only read files you trust."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(checkpoint, dict) or "biqa_config" not in checkpoint:
        raise ValueError(f"{path} has no biqa_config: it was not written by biqa-train or biqa-import-authors "
                         "(an authors' Life-IQA/DGIQA file converts with biqa-import-authors)")
    return checkpoint


def net_from_checkpoint(checkpoint: dict[str, Any], source: str) -> QualityModel:
    """The checkpoint's network with its weights. A head-only checkpoint (`weights_from_config` lists the
    parts it leaves out) builds those parts from its config's pretrained weights, e.g. the offline backbone."""
    stored = OmegaConf.create(checkpoint["biqa_config"])
    net_cfg = stored.model.net if checkpoint.get("weights_from_config") else without_pretrained_weights(stored.model.net)
    net = instantiate(net_cfg)
    load_net_weights(net, checkpoint, source)
    return net


def load_net_weights(net: QualityModel, checkpoint: dict[str, Any], source: str) -> None:
    """Every network key from the checkpoint (except the parts it declares in `weights_from_config`), and
    no key the network lacks; a mismatch names the keys and the file."""
    state = {k.removeprefix("net."): v for k, v in checkpoint["state_dict"].items() if k.startswith("net.")}
    from_config = tuple(checkpoint.get("weights_from_config") or ())
    for name, module in net.named_modules():
        if isinstance(module, RBFKernelHead):  # its buffers are as large as the fit's training set
            module.take_stored_shapes(state, f"{name}." if name else "")
    target = net.state_dict()
    missing = sorted(k for k in set(target) - set(state) if not (from_config and k.startswith(from_config)))
    unexpected = sorted(set(state) - set(target))
    shapes = sorted(f"{k}: file {tuple(state[k].shape)}, model {tuple(target[k].shape)}"
                    for k in set(state) & set(target) if state[k].shape != target[k].shape)
    if missing or unexpected or shapes:
        def listed(keys: list[str]) -> str:
            return ", ".join(keys[:8]) + (" ..." if len(keys) > 8 else "") if keys else "none"
        raise ValueError(
            f"{source}: the checkpoint's weights do not fit {type(net).__name__} as configured "
            f"({len(missing)} missing: {listed(missing)}; {len(unexpected)} unexpected: {listed(unexpected)}; "
            f"{len(shapes)} shape mismatch(es): {listed(shapes)}). Configure the model the checkpoint was "
            "trained as (its biqa_config), e.g. the same model= and model/backbone=."
        )
    net.load_state_dict(state, strict=not from_config)
