"""The shipped default's fitting script (experiments/biq2021/ship_default.py) end to end on a tiny BIQ2021
folder, with the recipe's own offline backbones: it fits a head per backbone on every photo, and writes a
file only after the recipe's model on the photos and the written file both reproduce the fitted predictions."""

import re
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from tests.benchmarks.conftest import write_biq2021_folder
from tests.experiments.biq2021.conftest import load_experiment, write_splits

from biqa.config import CONFIG_DIR
from biqa.lit.regression import net_from_checkpoint, read_checkpoint

RECIPE_BACKBONES = ("efficientnet_lite0_offline", "efficientnet_lite1_offline", "efficientnet_lite2_offline")


def test_the_recipe_fitted_on_every_photo_is_written_once_it_reproduces_the_fit(tmp_path, monkeypatch, capsys):
    search, ship = load_experiment("search"), load_experiment("ship_default")
    size = OmegaConf.load(Path(CONFIG_DIR) / "experiment" / "biq2021_best.yaml").data.eval_crops.size
    root = write_biq2021_folder(tmp_path / "biq2021", images=12)
    members = []
    for backbone in RECIPE_BACKBONES:
        members.append(tmp_path / f"{backbone}.pt")
        search.extract(members[-1], backbone, size, str(root), ["data.num_workers=0"])
    ids = torch.load(members[0], weights_only=False)["image_id"]
    splits = write_splits(tmp_path / "splits", ids, (0, 1, 2), train=8, val=2)
    head_each = "|".join(str(m) for m in members)
    search.evaluate(splits, [head_each], tmp_path / "search.json")

    output = tmp_path / "default.pt"
    monkeypatch.setattr(sys, "argv", ["ship_default.py", head_each, "--search", str(tmp_path / "search.json"),
                                      "--root", str(root), "--output", str(output)])
    ship.main()
    out = capsys.readouterr().out
    assert "the recipe's model on the photos" in out and "the written file" in out

    shipped = read_checkpoint(output)
    assert shipped["trained"]["photos"] == 12
    assert not any(key.startswith(("net.backbone.", "net.extra_backbones.")) for key in shipped["state_dict"]), \
        "the backbones' weights come from their packages, not the file"
    net = net_from_checkpoint(shipped, str(output))
    assert len(net.heads()) == len(RECIPE_BACKBONES)


def test_a_search_without_the_features_row_is_refused_with_the_command_to_run(tmp_path, monkeypatch):
    ship = load_experiment("ship_default")
    (tmp_path / "search.json").write_text("[]")
    monkeypatch.setattr(sys, "argv", ["ship_default.py", "a.pt|b.pt", "--search", str(tmp_path / "search.json"),
                                      "--root", str(tmp_path)])
    with pytest.raises(SystemExit, match=re.escape("no kernel_ridge row for a.pt|b.pt: run search.py evaluate")):
        ship.main()
