"""Every `biqa-train` command the README and the config headers document composes and passes the checks
(with debug=rehearsal, as a user would rehearse it first). The recipes' full rehearsal: benchmarks/rehearsal.py."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from biqa.checks import check_config
from biqa.config import CONFIG_DIR

CONF = Path(CONFIG_DIR)


def documented_commands() -> list[tuple[str, list[str]]]:
    sources = [CONF.parent / "README.md", *sorted(CONF.rglob("*.yaml"))]
    commands = []
    for source in sources:
        text = source.read_text()
        if source.suffix == ".yaml":  # commands live in the header comments
            text = "\n".join(line.lstrip("#") for line in text.splitlines() if line.startswith("#"))
        text = re.sub(r"\\\n\s*", " ", text)  # continuation lines
        for line in text.splitlines():
            line = line.split(" #")[0].strip()
            if line.startswith("biqa-train"):
                # "[...]" is an optional extra; under "-m" (a sweep) each job is one value of a=x,y,z: the first.
                words = [w for w in shlex.split(line)[1:] if w != "-m" and not w.startswith("[")]
                if "-m" in line.split():
                    words = [re.sub(r"=([^\[\],]+),.*", r"=\1", w) for w in words]
                commands.append((f"{source.relative_to(CONF.parent)}: {line}", words))
    return commands


COMMANDS = documented_commands()


def test_the_recipes_and_readme_commands_are_found():
    assert len(COMMANDS) >= 25
    assert any("experiment=lifeiqa_koniq" in name for name, _ in COMMANDS)


@pytest.mark.parametrize(("name", "overrides"), COMMANDS, ids=[name for name, _ in COMMANDS])
def test_documented_train_command_composes_and_passes_the_checks(compose_config, name, overrides):
    cfg = compose_config("train", [*overrides, "debug=rehearsal"])
    check_config(cfg, cfg.hydra.runtime.choices)
