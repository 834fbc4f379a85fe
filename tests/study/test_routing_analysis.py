"""Routing analysis: shares per expert by label, mutual information against a shuffled baseline, maps."""

import numpy as np
import pandas as pd
import pytest

from biqa.study.routing import analyse, image_labels, image_shares, mutual_information, share_maps


def test_mutual_information_is_the_label_entropy_when_the_label_picks_the_expert():
    labels = np.array([0, 0, 1, 1])
    assert mutual_information(labels, np.eye(2)[labels]) == pytest.approx(1.0)
    assert mutual_information(labels, np.full((4, 2), 0.5)) == pytest.approx(0.0)
    assert mutual_information(labels, np.eye(2)[[0, 1, 0, 1]]) == pytest.approx(0.0)


def routing_rows(images: list[str], experts_of: dict[str, int], tokens: int = 3) -> pd.DataFrame:
    """Top-2 routing, 0.75 of every token's weight on the image's expert and 0.25 on the next one."""
    rows = []
    for image in images:
        main = experts_of[image]
        for crop in range(2):
            for token in range(tokens):
                rows += [{"image": image, "router": "net.moe.router", "crop": crop, "token": token,
                          "expert": main, "weight": 0.75},
                         {"image": image, "router": "net.moe.router", "crop": crop, "token": token,
                          "expert": (main + 1) % 4, "weight": 0.25}]
    return pd.DataFrame(rows)


def typed_predictions(images: list[str], types: list[str]) -> pd.DataFrame:
    return pd.DataFrame({"image": images, "score": np.linspace(0, 1, len(images)), "prediction": 0.5,
                         "distortion_type": types})


def test_experts_that_follow_the_type_beat_the_shuffled_baseline(tmp_path):
    images = [f"i{n}" for n in range(40)]
    types = ["blur", "noise", "jpeg", "contrast"] * 10
    specialised = routing_rows(images, {image: n % 4 for n, image in enumerate(images)})
    indifferent = routing_rows(images, {image: (n // 4) % 4 for n, image in enumerate(images)})
    tables = {"a": specialised, "b": indifferent}
    runs = pd.DataFrame([{"row": v, "dataset": "synthetic", "seed": 0, "folder": v} for v in tables])
    shares, figures = analyse(runs, lambda folder: typed_predictions(images, types), tables.get)
    figures = figures.set_index("variant")
    assert figures.loc["a", "mi_bits"] > figures.loc["a", "mi_shuffled_q95"] and figures.loc["a", "p_value"] < 0.01
    assert figures.loc["b", "mi_bits"] < figures.loc["b", "mi_shuffled_q95"] and figures.loc["b", "p_value"] > 0.05
    assert figures.loc["a", "expert_entropy_bits"] == pytest.approx(2.0) and figures.loc["a", "experts_used"] == 4
    assert figures.loc["a", "mi_token_bits"] == pytest.approx(0.0, abs=1e-9)
    assert (figures["label_kind"] == "distortion type").all() and (figures["images"] == 40).all()
    blur = shares[(shares["variant"] == "a") & (shares["label"] == "blur")].set_index("expert")["share"]
    assert blur[0] == pytest.approx(0.75) and blur[1] == pytest.approx(0.25)
    assert share_maps(shares, "a", tmp_path / "routing_a.png").stat().st_size > 1000


def test_image_shares_sum_to_one_per_image():
    images = ["x", "y"]
    shares = image_shares(routing_rows(images, {"x": 0, "y": 3}))["net.moe.router"]
    assert shares.sum(axis=1).to_numpy() == pytest.approx([1.0, 1.0])
    assert shares.loc["y", 3] == pytest.approx(0.75) and shares.loc["y", 0] == pytest.approx(0.25)


def test_without_types_the_labels_are_mos_bands():
    table = pd.DataFrame({"image": [f"i{n}" for n in range(10)], "score": np.arange(10) / 10, "prediction": 0.0})
    kind, labels = image_labels(table)
    assert kind == "MOS band"
    assert labels["i0"] == "MOS 1/5" and labels["i9"] == "MOS 5/5" and labels.value_counts().eq(2).all()


def test_a_collapsed_router_uses_top_k_of_its_experts():
    images = [f"i{n}" for n in range(8)]
    collapsed = routing_rows(images, dict.fromkeys(images, 0))
    runs = pd.DataFrame([{"row": "full", "dataset": "synthetic", "seed": 0, "folder": "f"}])
    _, figures = analyse(runs, lambda folder: typed_predictions(images, ["blur", "noise"] * 4),
                         lambda folder: collapsed, lambda folder: 4)
    figure = figures.iloc[0]
    assert figure["experts_used"] == 2 and figure["experts"] == 4
    assert figure["mi_bits"] == pytest.approx(0.0, abs=1e-12) and figure["p_value"] == pytest.approx(1.0)
