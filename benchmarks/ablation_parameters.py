"""Parameter count of every ablation config at its paper's setting: the ablation table of the docs site.

    python benchmarks/ablation_parameters.py [--markdown FILE]

Models are built on the meta device (shapes only, no memory, no weights), with each model's paper backbone
from conf/cost.yaml. Prints a Markdown table and a JSON line.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf

from biqa.config import CONFIG_DIR, without_pretrained_weights
from biqa.cost import count_parameters

CONF = Path(CONFIG_DIR)


def describe(path: Path) -> str:
    comments = [line.lstrip("# ").strip() for line in path.read_text().splitlines()
                if line.startswith("#") and not line.startswith("# @package")]
    return " ".join(comments).split(": ", 1)[-1] if comments else ""


def count(overrides: list[str]) -> tuple[int, int]:
    # Outside a Hydra app: paths that default to Hydra's runtime folders are pinned to the current folder.
    cfg = compose("train", overrides=[*overrides, f"paths.root_dir={Path.cwd()}", f"paths.output_dir={Path.cwd()}"])
    with torch.device("meta"):
        net = instantiate(without_pretrained_weights(cfg.model.net))
    return count_parameters(net)


def ablation_rows() -> list[dict]:
    """One row per ablation config of conf/ablation/<model>/, after its model's reference row."""
    rows = []
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        paper = OmegaConf.load(CONF / "cost.yaml").paper_backbones
        for model_dir in sorted(p for p in (CONF / "ablation").iterdir() if p.is_dir()):
            model = model_dir.name
            backbone = f"model/backbone={paper[model]}"
            base_total, _ = count([f"model={model}", backbone])
            rows.append({"ablation": f"{model} (reference)", "what": f"the paper setting on {paper[model]}",
                         "parameters": base_total, "delta": 0})
            for path in sorted(model_dir.glob("*.yaml")):
                total, _ = count([f"ablation={model}/{path.stem}", backbone])
                rows.append({"ablation": f"{model}/{path.stem}", "what": describe(path),
                             "parameters": total, "delta": total - base_total})
    return rows


def markdown_table(rows: list[dict]) -> str:
    lines = ["| ablation | what it removes or swaps | parameters (paper setting) | vs reference |",
             "|---|---|---:|---:|"]
    lines += [f"| `{r['ablation']}` | {r['what']} | {r['parameters']:,} | {r['delta']:+,} |" for r in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--markdown", type=Path, help="also write the table to this file")
    args = parser.parse_args()
    rows = ablation_rows()
    table = markdown_table(rows)
    print(table)
    if args.markdown:
        args.markdown.write_text(table + "\n")
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
