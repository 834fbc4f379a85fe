"""The house rule: imports run one way, cli -> study -> engine -> lit -> data -> models, not even inside a
function; the floor modules (config, run_folder, plots, metrics) import no other part of biqa; nothing
imports Hydra's or Lightning's private modules."""

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
LAYERS = ["cli", "study", "engine", "lit", "data", "models"]
ENGINE_LEVEL = {"engine", "checks", "predict", "cost"}
FLOOR = {"config", "run_folder", "plots", "metrics"}


def layer(module: str) -> str:
    part = module.split(".")[1] if module.count(".") else ""
    return "engine" if part in ENGINE_LEVEL else part


def imports() -> dict[str, set[str]]:
    """module -> every module it imports, at module level or inside functions (biqa and its Hydra plugins)."""
    found: dict[str, set[str]] = {}
    for path in SRC.rglob("*.py"):
        module = ".".join(path.relative_to(SRC).with_suffix("").parts).removesuffix(".__init__")
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.setdefault(module, set()).add(node.module)
            elif isinstance(node, ast.Import):
                found.setdefault(module, set()).update(alias.name for alias in node.names)
    return found


def test_imports_run_one_way():
    upward = []
    for module, targets in imports().items():
        for target in targets:
            if not (module.startswith("biqa.") and target.startswith("biqa.")) or FLOOR & {layer(module), layer(target)}:
                continue
            if LAYERS.index(layer(target)) < LAYERS.index(layer(module)):
                upward.append(f"{module} -> {target}")
    assert not upward, upward


def test_the_floor_imports_only_the_floor():
    offenders = [f"{module} -> {target}" for module, targets in imports().items() if layer(module) in FLOOR
                 for target in targets if target.startswith("biqa.") and layer(target) not in FLOOR]
    assert not offenders, offenders


def test_no_private_hydra_or_lightning_module_is_imported():
    private = [f"{module} -> {target}" for module, targets in imports().items() for target in targets
               if target.startswith("hydra._internal") or "._" in target and target.startswith("lightning")]
    assert not private, private
