"""Every `biqa-train` and `biqa-sweep` command that the README, the documentation site's pages (docs/ and
the results pages experiments/*/README.md) and the config headers show composes and passes the checks
(with debug=rehearsal, as a user would rehearse it first). The recipes' full rehearsal: benchmarks/rehearsal.py."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from biqa.checks import check_config
from biqa.config import CONFIG_DIR

CONF = Path(CONFIG_DIR)


ROOT = CONF.parent
# Words of a documented command that are the sweep CLI's own flags, not Hydra overrides.
SWEEP_FLAGS = {"--dry-run", "--no-wait", "--status"}


def documented_commands() -> list[tuple[str, list[str]]]:
    pages = [*sorted((ROOT / "docs").rglob("*.md")), *sorted((ROOT / "experiments").rglob("README.md"))]
    sources = [ROOT / "README.md", *pages, *sorted(CONF.rglob("*.yaml"))]
    commands = []
    for source in sources:
        text = source.read_text()
        if source.suffix == ".yaml":  # commands live in the header comments
            text = "\n".join(line.lstrip("#") for line in text.splitlines() if line.startswith("#"))
        else:  # and in a page's code blocks (a prose line may start with a command's name)
            text = "\n".join(re.findall(r"^```[a-z]*\n(.*?)^```", text, flags=re.M | re.S))
        text = re.sub(r"\\\n\s*", " ", text)  # continuation lines
        for line in text.splitlines():
            line = line.split(" #")[0].strip()
            # placeholders (study=NAME, [study.KEY=VALUE ...]) show a command's form, not a command
            if "NAME" in line or "..." in line:
                continue
            if line.startswith("biqa-sweep"):  # biqa-sweep ARGS is biqa-train -m ARGS
                line = " ".join(["biqa-train", "-m", *(w for w in line.split()[1:] if w not in SWEEP_FLAGS)])
            if line.startswith("biqa-train"):
                # "[...]" is an optional extra; under "-m" (a sweep) each job is one value of a=x,y,z: the first.
                words = [w for w in shlex.split(line)[1:] if w != "-m" and not w.startswith("[")]
                if not all("=" in w for w in words):  # a sentence that starts with the command's name
                    continue
                # a search space (choice(2,4), ...) is read by the Optuna sweeper, not composed into a job
                words = [w for w in words if not w.startswith("hydra.sweeper.params.")]
                if "-m" in line.split():
                    words = [re.sub(r"=([^\[\],]+),.*", r"=\1", w) for w in words]
                commands.append((f"{source.relative_to(ROOT)}: {line}", words))
    return commands


COMMANDS = documented_commands()


def test_the_recipes_readme_and_site_commands_are_found():
    assert len(COMMANDS) >= 25
    assert any("experiment=lifeiqa_koniq" in name for name, _ in COMMANDS)
    assert any(name.startswith("docs/") for name, _ in COMMANDS)
    assert any(name.startswith("experiments/") and "study=" in name for name, _ in COMMANDS)


@pytest.mark.parametrize(("name", "overrides"), COMMANDS, ids=[name for name, _ in COMMANDS])
def test_documented_train_command_composes_and_passes_the_checks(compose_config, name, overrides):
    cfg = compose_config("train", [*overrides, "debug=rehearsal"])
    check_config(cfg, cfg.hydra.runtime.choices)
