import json

import torch

from biqa.cost import count_parameters, format_table, measure, to_json
from biqa.models.backbones import Backbone
from biqa.models.baselines import PooledHead


def test_measure_counts_parameters_flops_and_times_a_forward():
    net = PooledHead(Backbone("test_efficientnet", out_indices=(1, 2, 3, 4)), hidden_dim=8)
    total, decoder = count_parameters(net)
    head = net.backbone.channels[-1] * 8 + 8 + 8 + 1
    assert decoder == head and total == head + sum(p.numel() for p in net.backbone.parameters())
    cost = measure(net, "pooled", "test_efficientnet", batch_size=2, crop_size=64, warmup=1, repeats=2)
    assert cost.parameters == total and cost.decoder_parameters == decoder
    assert cost.gflops > 0 and cost.latency_ms > 0 and cost.images_per_s > 0
    row = json.loads(to_json([cost]))[0]
    assert row["model"] == "pooled" and row["crop_size"] == 64
    assert "pooled" in format_table([cost])


def test_flops_scale_with_crop_area():
    net = PooledHead(Backbone("test_resnet", out_indices=(1, 2, 3, 4)))
    small = measure(net, "pooled", "test_resnet", crop_size=32, warmup=0, repeats=1)
    large = measure(net, "pooled", "test_resnet", crop_size=64, warmup=0, repeats=1)
    assert 3.5 < large.gflops / small.gflops < 4.5
    assert torch.is_grad_enabled()
