"""The GPU speed switches, each a config key, on the CPU paths they have: trainer.precision (mixed picks bf16 or
fp16 by the GPU), model.channels_last, model.compile, matmul_precision (TF32) and trainer.benchmark (cuDNN)."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf
from tests.conftest import TINY

from biqa.engine import build_trainer, mixed_precision, speed_up, train
from biqa.models.backbones import Backbone
from biqa.models.baselines import PooledHead


@pytest.mark.parametrize(("cuda", "bf16", "accelerator", "expected"), [
    (True, True, "gpu", "bf16-mixed"), (True, False, "gpu", "16-mixed"), (True, True, "auto", "bf16-mixed"),
    (False, False, "gpu", "32-true"), (True, True, "cpu", "32-true")])
def test_mixed_precision_is_bf16_where_the_gpu_has_it_else_fp16(monkeypatch, cuda, bf16, accelerator, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: bf16)
    assert mixed_precision(accelerator) == expected


def test_the_gpu_trainer_config_uses_mixed_precision_and_cudnn_benchmark(compose_config, tmp_path):
    cfg = compose_config("train", ["trainer=gpu"])
    assert cfg.trainer.precision == "mixed" and cfg.trainer.benchmark is True
    cpu = compose_config("train", ["trainer.precision=mixed", "trainer.benchmark=true"])
    trainer = build_trainer(cpu, tmp_path)
    assert trainer.precision == "32-true"  # no GPU here


def tiny_net() -> PooledHead:
    torch.manual_seed(0)
    return PooledHead(Backbone("test_efficientnet", weights="none", out_indices=(1, 2, 3, 4)), hidden_dim=8)


def test_channels_last_turns_the_convolutions_nhwc_and_keeps_the_scores():
    net, crops = tiny_net().eval(), torch.rand(2, 3, 32, 32)
    expected = net(crops).score
    speed_up(net, OmegaConf.create({"channels_last": True}))
    convs = [m.weight for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(w.is_contiguous(memory_format=torch.channels_last) for w in convs if w.shape[-1] > 1)
    nhwc = crops.contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(net(nhwc).score, expected, atol=1e-5, rtol=1e-5)


def test_model_compile_compiles_the_net_in_place_and_keeps_its_parameter_names(monkeypatch):
    # Inductor's C++ build of even a tiny net takes minutes on this shared CPU: the test checks what biqa
    # does (torch.compile on the net, in place) with torch's eager backend; benchmarks/gpu_smoke.py compiles for real.
    calls = []
    real_compile = torch.compile

    def spy(target, *args, **kwargs):
        calls.append(target)
        return real_compile(target, backend="eager")

    monkeypatch.setattr(torch, "compile", spy)
    net, crops = tiny_net().eval(), torch.rand(2, 3, 32, 32)
    names, expected = list(net.state_dict()), net(crops).score
    assert speed_up(net, OmegaConf.create({"compile": True})) is net
    assert len(calls) == 1
    torch.testing.assert_close(net(crops).score, expected)
    assert list(net.state_dict()) == names


@pytest.mark.slow
def test_a_run_with_every_cpu_switch_on_trains(compose_config):
    before = torch.get_float32_matmul_precision()
    try:
        cfg = compose_config("train", [*TINY, "model.channels_last=true", "matmul_precision=high",
                                       "trainer.precision=bf16-mixed", "trainer.benchmark=true",
                                       "+trainer.limit_train_batches=2", "test=false"])
        metrics = train(cfg)
        assert torch.get_float32_matmul_precision() == "high"
        assert torch.isfinite(torch.tensor(metrics["val/srcc"]))
    finally:
        torch.set_float32_matmul_precision(before)
