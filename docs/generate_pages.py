"""The parts of the documentation site that the code and configs can produce, made on every build.

mkdocs-gen-files runs this (mkdocs.yml): it fills each `<!-- generated: NAME -->` marker of a page with the
table NAME computed from conf/ and the models, copies the results pages of experiments/ into the site, and
writes one API reference page per module. Nothing here is committed as output, so none of it can drift.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import re
import shutil
import warnings
from pathlib import Path

import mkdocs_gen_files
import yaml
from hydra import initialize_config_dir
from omegaconf import OmegaConf

from biqa.config import CONFIG_DIR

ROOT = Path(__file__).resolve().parent.parent
CONF = Path(CONFIG_DIR)
DOCS = ROOT / "docs"


def load_ablation_parameters():
    # benchmarks/ is scripts, not a package: the one parameter-counting code is loaded from its file.
    spec = importlib.util.spec_from_file_location("ablation_parameters", ROOT / "benchmarks" / "ablation_parameters.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ABLATION_PARAMETERS = load_ablation_parameters()


def header_comment(path: Path) -> str:
    """A config's description: its header comment, less the `@package` line and the commands in it."""
    lines = []
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        text = line.lstrip("#").strip()
        if text.startswith("@package") or text.startswith("biqa-"):
            continue
        lines.append(text)
    return " ".join(lines).replace("|", "\\|")


def config_choices() -> str:
    defaults = {}
    for entry in OmegaConf.to_container(OmegaConf.load(CONF / "train.yaml").defaults):
        if isinstance(entry, dict):
            (group, choice), = entry.items()
            defaults[group] = choice
    rows = ["| group | choices | default of `biqa-train` |", "|---|---|---|"]
    for folder in sorted(p for p in CONF.rglob("*") if p.is_dir() and any(p.glob("*.yaml"))):
        if selected_through_parent(folder):
            continue
        group = folder.relative_to(CONF).as_posix()
        choices = sorted(p.stem for p in folder.glob("*.yaml"))
        nested = sorted(p.name + "/*" for p in folder.iterdir() if p.is_dir() and selected_through_parent(p))
        listed = ", ".join(f"`{c}`" for c in choices + nested)
        if group not in defaults:  # chosen by another config (a model picks its backbone) or not at all
            default = "-"
        else:
            default = f"`{defaults[group]}`" if defaults[group] else "none"
        rows.append(f"| `{group}` | {listed} | {default} |")
    return "\n".join(rows)


def selected_through_parent(folder: Path) -> bool:
    """A folder of global configs inside a group (ablation/lifeiqa/) is chosen as the group's `NAME/file`."""
    return folder.parent != CONF and all("# @package _global_" in p.read_text() for p in folder.glob("*.yaml"))


def ablations() -> str:
    table = ABLATION_PARAMETERS.markdown_table(ABLATION_PARAMETERS.ablation_rows())
    any_model = [f"| `{p.stem}` | {header_comment(p)} | any model | |" for p in sorted((CONF / "ablation").glob("*.yaml"))]
    return table + "\n" + "\n".join(any_model)


def model_parameters() -> str:
    paper = OmegaConf.load(CONF / "cost.yaml").paper_backbones
    rows = ["| `model=` | paper backbone | parameters (paper backbone) | outside the backbones | "
            "parameters (offline Lite0) | outside the backbones |", "|---|---|---:|---:|---:|---:|"]
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        for model in sorted(p.stem for p in (CONF / "model").glob("*.yaml")):
            lite_total, lite_decoder = ABLATION_PARAMETERS.count([f"model={model}", "model/backbone=efficientnet_lite0_offline"])
            if model in paper:
                total, decoder = ABLATION_PARAMETERS.count([f"model={model}", f"model/backbone={paper[model]}"])
                paper_cells = f"`{paper[model]}` | {total:,} | {decoder:,}"
            else:
                paper_cells = "- | - | -"
            rows.append(f"| `{model}` | {paper_cells} | {lite_total:,} | {lite_decoder:,} |")
    return "\n".join(rows)


def published() -> str:
    rows = ["| model | source | dataset | SRCC | PLCC |", "|---|---|---|---:|---:|"]
    for model, entry in yaml.safe_load((CONF / "published.yaml").read_text()).items():
        scores = entry["scores"] or {"(none public)": {"srcc": "-", "plcc": "-"}}
        for dataset, score in scores.items():
            rows.append(f"| `{model}` | {entry['source']} | {dataset} | {score['srcc']} | {score['plcc']} |")
    return "\n".join(rows)


def commands_in(path: Path) -> list[str]:
    return [line.lstrip("#").strip() for line in path.read_text().splitlines()
            if line.lstrip("#").strip().startswith("biqa-")]


def recipes() -> str:
    rows = ["| `experiment=` | the command | what it is |", "|---|---|---|"]
    for path in sorted((CONF / "experiment").glob("*.yaml")):
        command = commands_in(path)[0] if commands_in(path) else f"biqa-train experiment={path.stem}"
        rows.append(f"| `{path.stem}` | `{command}` | {header_comment(path)} |")
    return "\n".join(rows)


def studies() -> str:
    rows = ["| `study=` | what it runs | results page |", "|---|---|---|"]
    for path in sorted((CONF / "study").glob("*.yaml")):
        page = ROOT / "experiments" / path.stem / "README.md"
        link = f"[{path.stem}](results/{path.stem}/index.md)" if page.exists() else "-"
        rows.append(f"| `{path.stem}` | {header_comment(path)} | {link} |")
    return "\n".join(rows)


TABLES = {"config_choices": config_choices, "ablations": ablations, "model_parameters": model_parameters,
          "published": published, "recipes": recipes, "studies": studies}
# Only the names above: the contributing page shows the marker's form with a placeholder name.
MARKER = re.compile(r"<!-- generated: (" + "|".join(TABLES) + r") -->")


def quietly(table) -> str:
    # Counting parameters builds BFRD with a random distortion encoder (shapes are all that is counted),
    # and BFRD says so loudly on stdout, stderr and as a warning each time: none of it belongs in the build log.
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        return table()


def fill_markers() -> None:
    for page in sorted(DOCS.rglob("*.md")):
        text = page.read_text()
        if MARKER.search(text):
            name = page.relative_to(DOCS).as_posix()
            with mkdocs_gen_files.open(name, "w") as out:
                out.write(MARKER.sub(lambda m: quietly(TABLES[m.group(1)]), text))
            mkdocs_gen_files.set_edit_path(name, name)


def copy_results_pages() -> None:
    """experiments/<study>/README.md (with its plots and CSVs) becomes results/<study>/index.md."""
    for readme in sorted((ROOT / "experiments").rglob("README.md")):
        folder = readme.parent.relative_to(ROOT / "experiments")
        target = Path("results") / folder
        with mkdocs_gen_files.open((target / "index.md").as_posix(), "w") as out:
            # A README's link to a sibling study's README is a link to that study's page here.
            out.write(re.sub(r"\]\((\.\./[^)\s]*?)README\.md", r"](\1index.md", readme.read_text()))
        mkdocs_gen_files.set_edit_path((target / "index.md").as_posix(), f"../{readme.relative_to(ROOT).as_posix()}")
        for data in readme.parent.rglob("*"):
            if data.suffix in {".png", ".csv"}:
                with mkdocs_gen_files.open((target / data.relative_to(readme.parent)).as_posix(), "wb") as out:
                    with data.open("rb") as source:
                        shutil.copyfileobj(source, out)


def write_api_reference() -> None:
    summary = []
    for source in sorted((ROOT / "src" / "biqa").rglob("*.py")):
        module = source.relative_to(ROOT / "src").with_suffix("")
        parts = list(module.parts)
        if parts[-1] == "__main__" or any(part.startswith("_") and part != "__init__" for part in parts):
            continue
        if parts[-1] == "__init__":
            parts = parts[:-1]
            page = Path("reference", *parts, "index.md")
        else:
            page = Path("reference", *parts).with_suffix(".md")
        name = ".".join(parts)
        with mkdocs_gen_files.open(page.as_posix(), "w") as out:
            out.write(f"# `{name}`\n\n::: {name}\n")
        mkdocs_gen_files.set_edit_path(page.as_posix(), f"../{source.relative_to(ROOT).as_posix()}")
        depth = len(parts) - 1
        summary.append(f"{'    ' * depth}* [{parts[-1]}]({page.relative_to('reference').as_posix()})")
    with mkdocs_gen_files.open("reference/SUMMARY.md", "w") as out:
        out.write("\n".join(summary) + "\n")


fill_markers()
copy_results_pages()
write_api_reference()
