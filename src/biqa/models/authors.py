"""The authors' released Life-IQA and DGIQA weights as biqa networks.

    authors' file ──read──> their state_dict ──rename (regex table, GCN transposed)──> biqa state_dict
    (wrapper dict or bare,      (`module.` prefix,                                     (every key filled once,
     yacs config optional)       Swin index buffers dropped)                            shapes equal) -> net

Formats: the Life-IQA training script saves `{'model': state_dict, 'optimizer', ..., 'config': <yacs CfgNode>}`
(no `module.` prefix); DGIQA's `single_image_inference.py` loads a bare state_dict strictly. A pickled yacs
config makes the file unloadable with `weights_only=True`: reading it needs the user's consent
(`allow_pickle`), and then yacs need not be installed (its CfgNode is read as a dict).

The renaming is strict bookkeeping: every authors' key is used once (Life-IQA's `backbone_stages.*` are
second names of `pretrain_model.*` and are checked equal, not used), every biqa key is filled once, shapes
agree; anything else is refused with the keys that are missing, extra or mis-shaped. Equality with the
authors' outputs is proven by tests/models/test_authors.py on fixtures computed with the authors' code.
"""

from __future__ import annotations

import pickle
import re
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch import nn

from biqa.config import CONFIG_DIR

AUTHORS_MODELS = ("lifeiqa", "dgiqa")
# Index tables that timm rebuilds; older timm versions saved them (the Life-IQA code deletes the same three).
REBUILT_BUFFERS = ("relative_position_index", "attn_mask", "relative_coords_table")

Transform = Callable[[torch.Tensor], torch.Tensor] | None


def _transposed(weight: torch.Tensor) -> torch.Tensor:
    # The authors' GraphConvolution stores (in, out) and computes x @ W; biqa's stores (out, in) for F.linear.
    return weight.t().contiguous()


LIFEIQA_SKIPPED = re.compile(r"backbone_stages\..*")
LIFEIQA_RULES: list[tuple[str, str, Transform]] = [
    (r"pretrain_model\.(.*)", r"backbone.model.\1", None),
    (r"bunch_embedding", "queries.queries", None),
    (r"proj_layer4\.(weight|bias)", r"queries.guide_proj.\1", None),
    (r"proj_layer3\.(weight|bias)", r"memory.proj.\1", None),
    (r"bunch_decoder\.layers\.(\d+)\.GCN\.gcn1\.weight", r"layers.\1.interaction.layers.0.weight", _transposed),
    (r"bunch_decoder\.layers\.(\d+)\.GCN\.gcn2\.weight", r"layers.\1.interaction.layers.1.weight", _transposed),
    (r"bunch_decoder\.layers\.(\d+)\.GCN\.gcn3\.weight", r"layers.\1.interaction.layers.2.weight", _transposed),
    (r"bunch_decoder\.layers\.(\d+)\.GCN\.gcn1\.bias", r"layers.\1.interaction.layers.0.bias", None),
    (r"bunch_decoder\.layers\.(\d+)\.GCN\.gcn2\.bias", r"layers.\1.interaction.layers.1.bias", None),
    (r"bunch_decoder\.layers\.(\d+)\.GCN\.gcn3\.bias", r"layers.\1.interaction.layers.2.bias", None),
    (r"bunch_decoder\.layers\.(\d+)\.norm2\.(weight|bias)", r"layers.\1.cross_attention.norm.\2", None),
    (r"bunch_decoder\.layers\.(\d+)\.multihead_attn\.(.*)", r"layers.\1.cross_attention.attn.\2", None),
    (r"norm3\.(weight|bias)", r"norm.\1", None),
    (r"gamma", "moe.gamma", None),
    (r"MOE\.router\.linear\.(weight|bias)", r"moe.moe.router.proj.\1", None),
    (r"MOE\.experts\.(\d+)\.net\.0\.(weight|bias)", r"moe.moe.experts.\1.fc1.\2", None),
    (r"MOE\.experts\.(\d+)\.net\.3\.(weight|bias)", r"moe.moe.experts.\1.fc2.\2", None),
    (r"fc\.(weight|bias)", r"head.fc.\1", None),
]

_BRIDGE_PARTS = [(r"conv1", "project"), (r"attention\.0", "gate.0"), (r"attention\.2", "gate.2"),
                 (r"conv2", "local_mix.0"), (r"norm", "local_mix.1")]
_ATTENTION_BLOCKS = [("depth_guided_cross_attention", "", "depth_car"), ("refinement_attention", "_spatial", "refinement")]
DGIQA_RULES: list[tuple[str, str, Transform]] = [
    (r"backbone\.patch_embed\.(.*)", r"backbone.model.patch_embed.\1", None),
    (r"backbone\.layers_(\d+)\.(.*)", r"backbone.model.layers.\1.\2", None),
    (r"depth_backbone\.patch_embed\.(.*)", r"depth_backbone.model.patch_embed.\1", None),
    (r"depth_backbone\.layers_(\d+)\.(.*)", r"depth_backbone.model.layers.\1.\2", None),
    *[(rf"tcb{i}{branch}\.{part}\.(.*)", rf"{target}_bridges.{i - 1}.{ours}.\1", None)
      for branch, target in (("", "rgb"), ("_depth", "depth")) for i in range(1, 5) for part, ours in _BRIDGE_PARTS],
    *[rule for theirs, suffix, ours in _ATTENTION_BLOCKS for rule in (
        (rf"{theirs}\.multihead_attn{suffix}\.(.*)", rf"{ours}.attention.attn.\1", None),
        (rf"{theirs}\.norm1{suffix}\.(.*)", rf"{ours}.attention_norm.\1", None),
        (rf"{theirs}\.norm2{suffix}\.(.*)", rf"{ours}.ffn_norm.\1", None),
        (rf"{theirs}\.fc{suffix}\.0\.(.*)", rf"{ours}.ffn.fc1.\1", None),
        (rf"{theirs}\.fc{suffix}\.2\.(.*)", rf"{ours}.ffn.fc2.\1", None))],
    (r"dilated_stack\.(\d)\.(.*)", r"dilated_stack.\1.\2", None),
    (r"fc\.(weight|bias)", r"head.\1", None),
]


@dataclass
class AuthorsCheckpoint:
    """What an authors' file holds: its state_dict (prefix and rebuilt buffers removed), the training
    config when the file has one (a plain dict), and which of the two layouts it had."""

    state_dict: dict[str, torch.Tensor]
    config: dict[str, Any] | None
    layout: str
    dropped: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Architecture:
    """The settings of the authors' model a file was trained with, read off its keys (and its config)."""

    model: str
    num_experts: int | None = None
    depth: int | None = None
    top_k: int | None = None

    def overrides(self) -> list[str]:
        """Hydra overrides composing this architecture from biqa's conf/ (random backbone init: the file
        fills every weight)."""
        if self.model == "dgiqa":
            return ["model=dgiqa", "model.backbone.weights=none"]
        return ["model=lifeiqa", "model/backbone=swin_base", "model.backbone.weights=none",
                f"model.net.num_experts={self.num_experts}", f"model.net.depth={self.depth}",
                f"model.net.top_k={self.top_k}"]


class AuthorsCheckpointError(ValueError):
    pass


class _ConfigNode(dict):
    """yacs.config.CfgNode read without yacs: a CfgNode is a dict subclass, so its pickle rebuilds as one."""


class _YacsFreeUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("yacs.config", "CfgNode"):
            return _ConfigNode
        return super().find_class(module, name)


# torch.load takes a module-like object with `Unpickler` and `load`.
_yacs_free_pickle = types.SimpleNamespace(
    __name__="biqa_yacs_free_pickle", Unpickler=_YacsFreeUnpickler,
    load=lambda file, **kwargs: _YacsFreeUnpickler(file, **kwargs).load(),
)


def read_authors_file(path: str | Path, allow_pickle: bool = False) -> AuthorsCheckpoint:
    """Load either authors' layout. Without `allow_pickle` only tensors and plain containers are read
    (torch's weights_only loader); a file that holds Python objects (Life-IQA's yacs config) is refused
    with what to do, because unpickling can run code from the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"authors' checkpoint {path} does not exist")
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        if not allow_pickle:
            raise AuthorsCheckpointError(
                f"{path} holds pickled Python objects besides the weights (the Life-IQA training script "
                f"stores its yacs config there), which the safe loader refuses ({str(error).splitlines()[0]}). "
                "Unpickling runs code from the file: if you trust it, allow it with allow_pickle=true "
                "(yacs need not be installed)."
            ) from None
        loaded = torch.load(path, map_location="cpu", weights_only=False, pickle_module=_yacs_free_pickle)
    state, config, layout = _unwrap(loaded, path)
    state, dropped = _normalised_keys(state)
    return AuthorsCheckpoint(state, _plain(config) if config is not None else None, layout, dropped)


def _unwrap(loaded: Any, path: Path) -> tuple[dict[str, torch.Tensor], Any, str]:
    if not isinstance(loaded, Mapping):
        raise AuthorsCheckpointError(f"{path} holds a {type(loaded).__name__}, not a state_dict or a dict with 'model'")
    if "model" in loaded and isinstance(loaded["model"], Mapping):
        return dict(loaded["model"]), loaded.get("config"), "wrapper ('model' key)"
    if loaded and all(isinstance(v, torch.Tensor) for v in loaded.values()):
        return dict(loaded), None, "bare state_dict"
    raise AuthorsCheckpointError(
        f"{path} is neither a bare state_dict nor the Life-IQA wrapper {{'model': state_dict, ...}}; "
        f"its top-level keys: {sorted(map(str, loaded))[:10]}"
    )


def _normalised_keys(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    if state and all(k.startswith("module.") for k in state):  # saved from a DistributedDataParallel wrapper
        state = {k.removeprefix("module."): v for k, v in state.items()}
    dropped = sorted(k for k in state if k.rsplit(".", 1)[-1] in REBUILT_BUFFERS)
    return {k: v for k, v in state.items() if k not in dropped}, dropped


def _plain(node: Any) -> Any:
    if isinstance(node, Mapping):
        return {str(k): _plain(v) for k, v in node.items()}
    if isinstance(node, list | tuple):
        return [_plain(v) for v in node]
    return node


def infer_architecture(checkpoint: AuthorsCheckpoint, model: str) -> Architecture:
    """Life-IQA's experts and decoder depth from the keys (checked against the file's config when it has
    one); top-k from the config, else the authors' 2. DGIQA has one architecture."""
    if model not in AUTHORS_MODELS:
        raise AuthorsCheckpointError(f"model must be one of {AUTHORS_MODELS}, got {model!r}")
    if model == "dgiqa":
        return Architecture("dgiqa")
    keys = checkpoint.state_dict
    experts = {int(m[1]) for k in keys if (m := re.match(r"MOE\.experts\.(\d+)\.", k))}
    layers = {int(m[1]) for k in keys if (m := re.match(r"bunch_decoder\.layers\.(\d+)\.", k))}
    if not experts or not layers:
        raise AuthorsCheckpointError(
            "not a Life-IQA state_dict: no MOE.experts.N / bunch_decoder.layers.N keys "
            f"(first keys: {sorted(keys)[:5]}); for DGIQA pass model='dgiqa'"
        )
    swin = ((checkpoint.config or {}).get("MODEL") or {}).get("SWIN") or {}
    found = {"NUM_EXPERTS": len(experts), "DEPTH": len(layers)}
    for name, value in found.items():
        if name in swin and int(swin[name]) != value:
            raise AuthorsCheckpointError(
                f"the file's config says MODEL.SWIN.{name}={swin[name]} but its keys hold {value}"
            )
    return Architecture("lifeiqa", num_experts=len(experts), depth=len(layers), top_k=int(swin.get("TOP_K", 2)))


def authors_config(architecture: Architecture, overrides: list[str] = ()) -> DictConfig:
    """biqa's run config (conf/train.yaml) with the authors' model; inside a Hydra app its config path is
    used, elsewhere conf/ is read directly."""
    # A later override of the same key or group (e.g. another model/backbone) replaces the architecture's.
    by_key = {re.sub(r"^[+~]+", "", o.split("=", 1)[0]): o for o in [*architecture.overrides(), *overrides]}
    all_overrides = list(by_key.values())
    if GlobalHydra.instance().is_initialized():
        return compose(config_name="train", overrides=all_overrides)
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(config_name="train", overrides=all_overrides)


def convert_state_dict(checkpoint: AuthorsCheckpoint, model: str, target: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The authors' tensors under biqa's names; `target` is the biqa net's state_dict (names and shapes).
    Refuses any key left over, any key filled twice or not at all, and any shape mismatch."""
    rules = [(re.compile(p), t, f) for p, t, f in (LIFEIQA_RULES if model == "lifeiqa" else DGIQA_RULES)]
    state = checkpoint.state_dict
    converted: dict[str, torch.Tensor] = {}
    sources: dict[str, str] = {}
    unmatched, twice, aliases = [], [], []
    for name, tensor in state.items():
        if model == "lifeiqa" and LIFEIQA_SKIPPED.fullmatch(name):
            aliases.append(name)
            continue
        for pattern, template, transform in rules:
            if match := pattern.fullmatch(name):
                ours = match.expand(template)
                if ours in converted:
                    twice.append(f"{ours} <- {sources[ours]} and {name}")
                converted[ours] = transform(tensor) if transform else tensor
                sources[ours] = name
                break
        else:
            unmatched.append(name)
    if aliases:
        _check_aliases(state, aliases)
    missing = sorted(set(target) - set(converted))
    extra = sorted(set(converted) - set(target))
    shapes = [f"{k} <- {sources[k]}: file {tuple(converted[k].shape)}, biqa {tuple(target[k].shape)}"
              for k in sorted(set(converted) & set(target)) if converted[k].shape != target[k].shape]
    problems = [(f"{len(unmatched)} authors' key(s) that no rule maps", unmatched),
                (f"{len(twice)} biqa key(s) filled twice", twice),
                (f"{len(missing)} biqa key(s) the file does not fill", missing),
                (f"{len(extra)} converted key(s) biqa's {model} does not have", [f"{k} <- {sources[k]}" for k in extra]),
                (f"{len(shapes)} shape mismatch(es)", shapes)]
    report = [f"  {title}: {', '.join(keys[:12])}{' ...' if len(keys) > 12 else ''}" for title, keys in problems if keys]
    if report:
        raise AuthorsCheckpointError(f"the file does not convert to biqa's {model} one to one:\n" + "\n".join(report))
    return {k: v.to(target[k].dtype) if v.is_floating_point() else v for k, v in converted.items()}


def _check_aliases(state: Mapping[str, torch.Tensor], aliases: list[str]) -> None:
    """Life-IQA's `backbone_stages.*` name the Swin stages a second time; a file whose two copies differ was
    edited after training, and it would be unclear which one the model used."""
    def original(name: str) -> str:
        stage, rest = re.fullmatch(r"backbone_stages\.(\d+)\.(.*)", name).groups()
        if stage == "0":
            part, rest = rest.split(".", 1)
            return f"pretrain_model.{'patch_embed' if part == '0' else 'layers.0'}.{rest}"
        return f"pretrain_model.layers.{stage}.{rest}"

    differing = [n for n in aliases if original(n) not in state or not torch.equal(state[n], state[original(n)])]
    if differing:
        raise AuthorsCheckpointError(
            f"{len(differing)} backbone_stages.* key(s) do not equal their pretrain_model.* original: {differing[:5]}"
        )


def load_authors_checkpoint(
    path: str | Path, model: str = "lifeiqa", allow_pickle: bool = False, overrides: list[str] = (),
) -> nn.Module:
    """The authors' Life-IQA or DGIQA file as biqa's network (input RGB in [0, 1], like every biqa net),
    in eval mode. `overrides`: extra Hydra overrides of the composed config (e.g. dropout settings)."""
    net, _, _ = import_authors_checkpoint(path, model, allow_pickle, overrides)
    return net


def import_authors_checkpoint(
    path: str | Path, model: str, allow_pickle: bool = False, overrides: list[str] = (),
) -> tuple[nn.Module, DictConfig, dict[str, Any]]:
    """`load_authors_checkpoint` plus the composed run config and a provenance record."""
    checkpoint = read_authors_file(path, allow_pickle=allow_pickle)
    architecture = infer_architecture(checkpoint, model)
    cfg = authors_config(architecture, list(overrides))
    net = instantiate(cfg.model.net)
    state = convert_state_dict(checkpoint, model, net.state_dict())
    net.load_state_dict(state, strict=True)
    net.eval()
    provenance = {"file": str(Path(path).resolve()), "model": model, "layout": checkpoint.layout,
                  "architecture": architecture.__dict__, "authors_keys": len(checkpoint.state_dict),
                  "dropped_rebuilt_buffers": checkpoint.dropped}
    return net, cfg, provenance
