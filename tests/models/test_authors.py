"""biqa.models.authors: the authors' Life-IQA / DGIQA files reproduce the authors' outputs.

Fixtures (tests/models/fixtures/authors/, slimmed from ../shared/fixtures/authors/): the authors' state_dict
key list, a deterministic fill rule, and the outputs their code gives on fixed inputs. Each slow test rebuilds
the state_dict, saves it in the authors' own layout, imports it and compares in eval mode.
"""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest
import torch

from biqa.models.authors import (
    AuthorsCheckpoint,
    AuthorsCheckpointError,
    convert_state_dict,
    infer_architecture,
    load_authors_checkpoint,
    read_authors_file,
)

FIXTURES = Path(__file__).parent / "fixtures" / "authors"


def fixture(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def fill_value(name: str, shape: list[int], i: int) -> torch.Tensor:
    """The fixtures' fill rule (../shared/fixtures/authors/README.md), case by case."""
    shape, g = tuple(shape), torch.Generator().manual_seed(i)
    if name.endswith("running_var"):
        return 0.5 + torch.rand(shape, generator=g)
    if name.endswith("running_mean"):
        return 0.1 * torch.randn(shape, generator=g)
    if len(shape) == 1 and name.endswith("weight"):
        return 1 + 0.1 * torch.randn(shape, generator=g)
    if name.endswith("bias"):
        return 0.05 * torch.randn(shape, generator=g)
    if len(shape) == 0:
        return 0.5 + 0.1 * torch.randn((), generator=g)
    if name.endswith("embedding"):
        return 3.0 * torch.randn(shape, generator=g)
    return 0.02 * torch.randn(shape, generator=g)


def authors_state_dict(data: dict) -> dict[str, torch.Tensor]:
    state, i = {}, 0
    for entry in data["keys"]:
        if entry["role"] == "param":
            tensor = fill_value(entry["name"], entry["shape"], i)
            i += 1
            abs_sum = tensor.double().abs().sum().item()
            assert abs(tensor.double().sum().item() - entry["sum"]) <= 1e-6 * abs_sum + 1e-12, entry["name"]
            assert abs(abs_sum - entry["abs_sum"]) <= 1e-6 * abs_sum + 1e-12, entry["name"]
            state[entry["name"]] = tensor
        elif entry["role"] == "alias":
            state[entry["name"]] = state[entry["alias_of"]]
        else:
            state[entry["name"]] = torch.tensor(entry["value"], dtype=getattr(torch, entry["dtype"]))
        assert list(state[entry["name"]].shape) == entry["shape"], entry["name"]
    return state


def fixed_inputs(data: dict) -> tuple[torch.Tensor, torch.Tensor]:
    x01 = torch.rand(2, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    d01 = torch.rand(2, 1, 224, 224, generator=torch.Generator().manual_seed(2))
    checks = data["inputs"]["checks"]
    assert x01.double().sum().item() == pytest.approx(checks["x01_sum_float64"], rel=1e-12)
    assert d01.double().sum().item() == pytest.approx(checks["d01_sum_float64"], rel=1e-12)
    return x01, d01


class _FakeCfgNode(dict):
    """Pickles as yacs.config.CfgNode, as the Life-IQA training script's config does."""


def save_lifeiqa_training_checkpoint(state: dict, path: Path, swin: dict) -> None:
    """The layout of the Life-IQA authors' save_checkpoint, with a yacs config pickled in; yacs is not
    installed, so a stand-in module is registered only while saving."""
    module = types.ModuleType("yacs.config")
    module.CfgNode = _FakeCfgNode
    _FakeCfgNode.__module__, _FakeCfgNode.__qualname__ = "yacs.config", "CfgNode"
    sys.modules["yacs"], sys.modules["yacs.config"] = types.ModuleType("yacs"), module
    try:
        config = _FakeCfgNode(MODEL=_FakeCfgNode(SWIN=_FakeCfgNode(swin)), TAG="default")
        torch.save({"model": state, "optimizer": {}, "lr_scheduler": {}, "max_plcc": 0.9, "epoch": 3,
                    "config": config}, path)
    finally:
        del sys.modules["yacs"], sys.modules["yacs.config"]
        _FakeCfgNode.__module__, _FakeCfgNode.__qualname__ = __name__, "_FakeCfgNode"


def max_abs_diff(got: torch.Tensor, expected: list[float] | float) -> float:
    return (got.double() - torch.tensor(expected, dtype=torch.float64)).abs().max().item()


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.slow
@pytest.mark.parametrize("name, swin", [
    ("lifeiqa_swinb_e4", {"EMBED_DIM": 384, "JUERY_NUMS": 6, "NUM_EXPERTS": 4, "TOP_K": 2, "DEPTH": 4}),
    ("lifeiqa_swinb_e2_koniq", {"EMBED_DIM": 384, "JUERY_NUMS": 6, "NUM_EXPERTS": 2, "TOP_K": 2, "DEPTH": 4}),
])
def test_lifeiqa_import_reproduces_the_authors_outputs(name, swin, tmp_path, one_thread):
    data = fixture(name)
    path = tmp_path / "ckpt_epoch_3.pth"
    save_lifeiqa_training_checkpoint(authors_state_dict(data), path, swin)
    with pytest.raises(AuthorsCheckpointError, match="allow_pickle=true"):
        read_authors_file(path)
    net = load_authors_checkpoint(path, model="lifeiqa", allow_pickle=True)
    path.unlink()
    assert net.moe.moe.router.proj.weight.shape[0] == swin["NUM_EXPERTS"] and len(net.layers) == swin["DEPTH"]
    x01, _ = fixed_inputs(data)
    with torch.no_grad():
        out = net(x01)
    expected = data["expected"]
    diffs = {"scores": max_abs_diff(out.score, expected["scores"]),
             "load_balance": max_abs_diff(out.aux_losses["load_balance"], expected["load_balance"]),
             "z_loss": max_abs_diff(out.aux_losses["z_loss"], expected["z_loss"])}
    print(f"{name}: max |diff| {diffs}")
    assert max(diffs.values()) < expected["tolerance_abs"], diffs


@pytest.mark.slow
def test_dgiqa_import_reproduces_the_authors_outputs(tmp_path, one_thread):
    data = fixture("dgiqa_swint")
    path = tmp_path / "dgiqa_koniq.pth"
    # single_image_inference.py loads a bare state_dict (strictly); a DDP-saved copy carries `module.`.
    torch.save({f"module.{k}": v for k, v in authors_state_dict(data).items()}, path)
    net = load_authors_checkpoint(path, model="dgiqa")
    path.unlink()
    x01, d01 = fixed_inputs(data)
    with torch.no_grad():
        out = net(x01, d01)
    diff = max_abs_diff(out.score, data["expected"]["scores"])
    print(f"dgiqa_swint: max |diff| {diff}")
    assert diff < data["expected"]["tolerance_abs"]


# -- formats and bookkeeping, on small state_dicts -------------------------------------------------------------

def lifeiqa_keys(experts: int = 2, layers: int = 1) -> dict[str, torch.Tensor]:
    state = {"bunch_embedding": torch.zeros(1, 6, 8), "gamma": torch.tensor(0.5),
             "pretrain_model.layers.0.downsample.norm.weight": torch.ones(4)}
    state["backbone_stages.0.1.downsample.norm.weight"] = state["pretrain_model.layers.0.downsample.norm.weight"]
    for e in range(experts):
        state[f"MOE.experts.{e}.net.0.weight"] = torch.zeros(16, 8)
    for layer in range(layers):
        state[f"bunch_decoder.layers.{layer}.GCN.gcn1.weight"] = torch.arange(6.0).view(3, 2)
    return state


def target_of(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {"queries.queries": torch.zeros(1, 6, 8), "moe.gamma": torch.tensor(0.1),
            "backbone.model.layers.0.downsample.norm.weight": torch.ones(4),
            **{f"moe.moe.experts.{e}.fc1.weight": torch.zeros(16, 8) for e in range(2)},
            "layers.0.interaction.layers.0.weight": torch.zeros(2, 3)}


def test_conversion_renames_transposes_and_skips_the_aliases():
    state = lifeiqa_keys()
    converted = convert_state_dict(AuthorsCheckpoint(state, None, "bare"), "lifeiqa", target_of(state))
    assert set(converted) == set(target_of(state))
    assert torch.equal(converted["layers.0.interaction.layers.0.weight"], torch.arange(6.0).view(3, 2).t())


def test_conversion_refuses_missing_extra_and_misshaped_keys_naming_them():
    state = lifeiqa_keys()
    state["MOE.experts.1.net.0.weight"] = torch.zeros(16, 9)
    state["surprise.weight"] = torch.zeros(1)
    del state["gamma"]
    with pytest.raises(AuthorsCheckpointError) as error:
        convert_state_dict(AuthorsCheckpoint(state, None, "bare"), "lifeiqa", target_of(lifeiqa_keys()))
    message = str(error.value)
    assert "no rule maps: surprise.weight" in message
    assert "does not fill: moe.gamma" in message
    assert "moe.moe.experts.1.fc1.weight <- MOE.experts.1.net.0.weight: file (16, 9), biqa (16, 8)" in message


def test_conversion_refuses_an_alias_that_differs_from_its_original():
    state = lifeiqa_keys()
    state["backbone_stages.0.1.downsample.norm.weight"] = torch.zeros(4)
    with pytest.raises(AuthorsCheckpointError, match="do not equal their pretrain_model"):
        convert_state_dict(AuthorsCheckpoint(state, None, "bare"), "lifeiqa", target_of(state))


def test_reads_bare_and_wrapped_files_and_strips_module_prefix_and_rebuilt_buffers(tmp_path):
    state = lifeiqa_keys(experts=4, layers=3)
    bare = tmp_path / "bare.pth"
    torch.save({f"module.{k}": v for k, v in state.items()}
               | {"module.pretrain_model.layers.0.blocks.0.attn.relative_position_index": torch.zeros(2)}, bare)
    read = read_authors_file(bare)
    assert read.layout == "bare state_dict" and set(read.state_dict) == set(state) and read.config is None
    assert read.dropped == ["pretrain_model.layers.0.blocks.0.attn.relative_position_index"]
    architecture = infer_architecture(read, "lifeiqa")
    assert (architecture.num_experts, architecture.depth, architecture.top_k) == (4, 3, 2)

    wrapped = tmp_path / "wrapped.pth"
    torch.save({"model": state, "epoch": 1}, wrapped)
    assert read_authors_file(wrapped).layout == "wrapper ('model' key)"


def test_a_config_that_contradicts_the_keys_is_refused(tmp_path):
    path = tmp_path / "ckpt.pth"
    save_lifeiqa_training_checkpoint(lifeiqa_keys(experts=2), path, {"NUM_EXPERTS": 8, "DEPTH": 1, "TOP_K": 2})
    checkpoint = read_authors_file(path, allow_pickle=True)
    assert checkpoint.config["MODEL"]["SWIN"]["NUM_EXPERTS"] == 8
    with pytest.raises(AuthorsCheckpointError, match="MODEL.SWIN.NUM_EXPERTS=8 but its keys hold 2"):
        infer_architecture(checkpoint, "lifeiqa")


def test_files_that_are_not_checkpoints_are_refused_clearly(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_authors_file(tmp_path / "missing.pth")
    odd = tmp_path / "odd.pth"
    torch.save({"weights": [1, 2]}, odd)
    with pytest.raises(AuthorsCheckpointError, match="neither a bare state_dict"):
        read_authors_file(odd)
    dgiqa = tmp_path / "dgiqa.pth"
    torch.save({"fc.weight": torch.zeros(1, 4)}, dgiqa)
    with pytest.raises(AuthorsCheckpointError, match="for DGIQA pass model='dgiqa'"):
        infer_architecture(read_authors_file(dgiqa), "lifeiqa")

