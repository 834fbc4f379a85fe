"""Thin Hydra entry points. Importing this package registers biqa's OmegaConf resolvers."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from omegaconf import OmegaConf

CONFIG_DIR = str(Path(__file__).resolve().parents[3] / "conf")


def run_name(override_dirname: str) -> str:
    """A run folder name from the command's overrides: stable, filesystem-safe, at most ~100 characters."""
    if not override_dirname:
        return "default"
    name = re.sub(r"[^A-Za-z0-9=,._+-]", "-", override_dirname.replace("/", "-"))
    if len(name) <= 100:
        return name
    return f"{name[:80]}..{hashlib.sha1(override_dirname.encode()).hexdigest()[:10]}"


OmegaConf.register_new_resolver("run_name", run_name, replace=True)
