"""Which experts each token of each test image went to, and with what weight.

`RoutingRecorder` is a callback that hooks every top-k router of the net (`biqa.models.blocks.moe.TopKRouter`:
Life-IQA's MoE blocks, BFRD's MoE feed-forward and its parallel-experts gate) while the test runs; training
and the model are untouched. A router's gates have shape (B*K, [tokens,] E) for B images of K crops; the
recorder keeps them per image, by the batch's record index. `routing_table` turns them into one row per
(image, router, crop, token, chosen expert) with the gate weight: the `test_routing.csv` of a run folder.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Any

import lightning as L
import pandas as pd
import torch

from biqa.models.blocks.moe import TopKRouter

ROUTING_COLUMNS = ["image", "router", "crop", "token", "expert", "weight"]


def routers(net: torch.nn.Module) -> dict[str, TopKRouter]:
    """Every top-k router of `net`, by its module path."""
    return {name: module for name, module in net.named_modules() if isinstance(module, TopKRouter)}


class RoutingRecorder(L.Callback):
    def __init__(self) -> None:
        self.gates: dict[str, list[torch.Tensor]] = {}
        self.indices: list[torch.Tensor] = []
        self._batch_gates: dict[str, torch.Tensor] = {}
        self._handles: list[Any] = []

    def on_test_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.gates, self.indices = {}, []
        found = routers(pl_module)
        self.gates = {name: [] for name in found}
        self._handles = [router.register_forward_hook(partial(self._keep, name)) for name, router in found.items()]

    def _keep(self, name: str, module: torch.nn.Module, inputs: Any, output: tuple[torch.Tensor, ...]) -> None:
        self._batch_gates[name] = output[0].detach().float()

    def on_test_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int,
                            dataloader_idx: int = 0) -> None:
        self._batch_gates = {}

    def on_test_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                          batch_idx: int, dataloader_idx: int = 0) -> None:
        if not self._handles:
            return
        index = batch["index"]
        images = len(index)
        for name, gates in self._batch_gates.items():
            # (B*K, [T,] E) -> (B, K, T, E): crops of one image are consecutive, as the net received them.
            self.gates[name].append(gates.reshape(images, gates.shape[0] // images, -1, gates.shape[-1]).cpu())
        self.indices.append(index.detach().cpu())

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []
        if trainer.world_size > 1 and self.indices:
            self._gather(pl_module)

    def _gather(self, pl_module: L.LightningModule) -> None:
        """Every rank's images on every rank (DistributedSampler gives each rank as many batches)."""
        indices = pl_module.all_gather(torch.cat(self.indices).to(pl_module.device))
        self.indices = [indices.flatten().cpu()]
        for name, parts in self.gates.items():
            gathered = pl_module.all_gather(torch.cat(parts).to(pl_module.device))
            self.gates[name] = [gathered.flatten(0, 1).cpu()]

    def per_image(self) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(record indices (N,), router -> gates (N, K, T, E)), each image once."""
        if not self.indices:
            return torch.empty(0, dtype=torch.long), {}
        indices = torch.cat(self.indices)
        first = {int(i): position for position, i in reversed(list(enumerate(indices.tolist())))}
        keep = torch.tensor(sorted(first.values()), dtype=torch.long)
        return indices[keep], {name: torch.cat(parts)[keep] for name, parts in self.gates.items() if parts}


def routing_table(recorder: RoutingRecorder, image_ids: Sequence[str]) -> pd.DataFrame:
    """One row per (image, router, crop, token, expert the token was routed to) with its gate weight;
    `image_ids[index]` names the image of record `index`. Unchosen experts (gate exactly 0) are left out."""
    indices, gates = recorder.per_image()
    frames = []
    for name, values in gates.items():
        image, crop, token, expert = torch.nonzero(values > 0, as_tuple=True)
        frames.append(pd.DataFrame({
            "image": [image_ids[i] for i in indices[image].tolist()], "router": name, "crop": crop.numpy(),
            "token": token.numpy(), "expert": expert.numpy(), "weight": values[image, crop, token, expert].numpy(),
        }))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=ROUTING_COLUMNS)
