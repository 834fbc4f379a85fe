"""biqa-import-authors: an authors' file becomes a checkpoint that biqa-eval, biqa-predict and biqa-train
(model.init_from) accept. A small Life-IQA (tiny backbone) stands in for the authors' Swin-B one: its biqa
weights are renamed to the authors' names here; tests/models/test_authors.py proves the real mapping."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from PIL import Image
from tests.conftest import TINY

from biqa.engine import evaluate, import_authors, train
from biqa.lit.regression import read_checkpoint

pytestmark = pytest.mark.slow

SMALL = ["model.net.embed_dim=16", "model.net.num_heads=2", "model.net.num_experts=3", "model.net.depth=2"]
# biqa -> authors' names (the inverse of biqa.models.authors.LIFEIQA_RULES), GCN weights transposed back.
TO_AUTHORS = [
    (r"backbone\.model\.(.*)", r"pretrain_model.\1"),
    (r"queries\.queries", "bunch_embedding"),
    (r"queries\.guide_proj\.(.*)", r"proj_layer4.\1"),
    (r"memory\.proj\.(.*)", r"proj_layer3.\1"),
    (r"layers\.(\d+)\.interaction\.layers\.0\.(.*)", r"bunch_decoder.layers.\1.GCN.gcn1.\2"),
    (r"layers\.(\d+)\.interaction\.layers\.1\.(.*)", r"bunch_decoder.layers.\1.GCN.gcn2.\2"),
    (r"layers\.(\d+)\.interaction\.layers\.2\.(.*)", r"bunch_decoder.layers.\1.GCN.gcn3.\2"),
    (r"layers\.(\d+)\.cross_attention\.norm\.(.*)", r"bunch_decoder.layers.\1.norm2.\2"),
    (r"layers\.(\d+)\.cross_attention\.attn\.(.*)", r"bunch_decoder.layers.\1.multihead_attn.\2"),
    (r"norm\.(.*)", r"norm3.\1"),
    (r"moe\.gamma", "gamma"),
    (r"moe\.moe\.router\.proj\.(.*)", r"MOE.router.linear.\1"),
    (r"moe\.moe\.experts\.(\d+)\.fc1\.(.*)", r"MOE.experts.\1.net.0.\2"),
    (r"moe\.moe\.experts\.(\d+)\.fc2\.(.*)", r"MOE.experts.\1.net.3.\2"),
    (r"head\.fc\.(.*)", r"fc.\1"),
]


def hydra_list(key: str, values: list[str]) -> str:
    return f"{key}=[{','.join(repr(v) for v in values)}]"


def authors_name(key: str) -> str:
    for pattern, template in TO_AUTHORS:
        if match := re.fullmatch(pattern, key):
            return match.expand(template)
    raise AssertionError(f"no inverse rule for {key}")


@pytest.fixture
def authors_file(compose_config, tmp_path) -> tuple[Path, dict[str, torch.Tensor]]:
    cfg = compose_config("train", ["model=lifeiqa", "model/backbone=test_efficientnet", *SMALL])
    torch.manual_seed(0)
    net = instantiate(cfg.model.net)
    ours = {k: v + 0.01 * torch.randn_like(v) if v.is_floating_point() else v for k, v in net.state_dict().items()}
    theirs = {authors_name(k): v.t() if ".interaction.layers." in k and k.endswith("weight") else v
              for k, v in ours.items()}
    path = tmp_path / "ckpt_epoch_9.pth"
    torch.save({"module." + k: v for k, v in theirs.items()}, path)
    return path, ours


def test_imported_checkpoint_serves_eval_predict_and_init_from(authors_file, compose_config, tmp_path, capsys):
    path, ours = authors_file
    output = tmp_path / "imported.ckpt"
    cfg = compose_config("import_authors", [
        f"input={path}", "authors_model=lifeiqa", f"output={output}",
        hydra_list("overrides", ["model/backbone=test_efficientnet", *SMALL[:2], "data.eval_crops.size=32",
                                 "data.eval_crops.count=2"])])
    import_authors(cfg)
    assert "every key used once" in capsys.readouterr().out
    checkpoint = read_checkpoint(output)
    assert checkpoint["imported_from"]["architecture"]["num_experts"] == 3
    assert checkpoint["imported_from"]["architecture"]["depth"] == 2
    assert checkpoint["biqa_config"]["data"]["eval_crops"]["count"] == 2  # the authors' crops, overridden
    for key, value in ours.items():
        assert torch.equal(checkpoint["state_dict"][f"net.{key}"], value), key

    # biqa-eval on a dataset given on the command line
    metrics = evaluate(compose_config("eval", [f"ckpt_path={output}", "data=synthetic", *TINY[1:11],
                                               "trainer.enable_progress_bar=false"]))
    assert np.isfinite(metrics["test/srcc"])

    # biqa-predict scores a folder with it
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(2):
        Image.fromarray(np.random.default_rng(i).integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    from biqa.predict import predict_folder

    scores = tmp_path / "scores.csv"
    predict_folder(compose_config("predict", [f"input_dir={folder}", f"output={scores}", f"ckpt_path={output}",
                                              "num_workers=0"]))
    rows = list(csv.DictReader(scores.open()))
    assert len(rows) == 2 and all(np.isfinite(float(r["score"])) for r in rows)

    # biqa-train starts from it (frozen backbone: its weights stay the imported ones)
    run = compose_config("train", [*TINY, "model=lifeiqa", *SMALL, f"model.init_from={output}",
                                   "model.backbone.freeze=all", "test=false"])
    train(run)
    trained = torch.load(next((Path(run.paths.output_dir) / "checkpoints").glob("last.ckpt")), weights_only=False)
    for key in [k for k in ours if k.startswith("backbone.")]:
        assert torch.equal(trained["state_dict"][f"net.{key}"], ours[key]), key


def test_init_from_a_checkpoint_of_another_model_names_the_keys(authors_file, compose_config, tmp_path):
    path, _ = authors_file
    output = tmp_path / "imported.ckpt"
    import_authors(compose_config("import_authors", [
        f"input={path}", "authors_model=lifeiqa", f"output={output}",
        hydra_list("overrides", ["model/backbone=test_efficientnet", *SMALL[:2]])]))
    run = compose_config("train", [*TINY, "model=pooled", f"model.init_from={output}"])
    with pytest.raises(ValueError, match=r"model.init_from=.*imported.ckpt: .*PooledHead") as error:
        train(run)
    assert "2 missing: head.2.bias, head.2.weight; 48 unexpected: head.fc.bias" in str(error.value)
