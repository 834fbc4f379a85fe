"""The probe search behind `experiment=biq2021_best`: which frozen features and which closed-form solver,
picked on validation SRCC only, over the three seeded splits of the BIQ2021 study.

    python experiments/biq2021/search.py extract lite0_512.pt --backbone efficientnet_lite0_offline --size 512
    python experiments/biq2021/search.py extract lite2_512.pt --backbone efficientnet_lite2_offline --size 512
    python experiments/biq2021/search.py evaluate SPLITS_DIR lite0_512.pt lite2_512.pt lite0_512.pt+lite2_512.pt \
        "lite0_512.pt|lite2_512.pt" [--solvers ridge kernel_ridge nystroem_2048]

`extract` runs the probe's own feature map (biqa.models.probe.StageStatisticsProbe.statistics: every stage's
channel mean and standard deviation) over every photo of the dataset once, on the whole photo resized to
`--size` px (the evaluation view, as biqa-predict sees it), through biqa's datamodule and probe module. It is
the one expensive step: one backbone pass per photo.

`evaluate` reads the study's split folders (SPLITS_DIR/seed=K/split.json, e.g. a study's
ridge_probe/biq2021) and, for each feature set (`a.pt+b.pt` concatenates the features of two passes) and
each solver (ridge; kernel ridge with an RBF kernel; Nystroem kernel ridge), picks the hyper-parameters on the
split's validation photos, then scores its held-out photos; `a.pt|b.pt` averages the two kernel-ridge
predictions. It prints a table and writes JSON.

`ensemble-runs` averages the predictions of models the study trained (every subset of the named variants),
picks the subset on each split's validation predictions (`biqa-eval ckpt_path=JOB/checkpoints/BEST.ckpt
part=val hydra.run.dir=VAL_DIR/<variant>/seed_K`) and reads its held-out figures off the jobs' test predictions:

    python experiments/biq2021/search.py ensemble-runs STUDY_DIR VAL_DIR kernel_probe transformer_decoder lifeiqa
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import statistics
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import open_dict

from biqa.config import CONFIG_DIR
from biqa.engine import build_module
from biqa.lit.ridge import best_solution, solve
from biqa.metrics import correlation_metrics

RIDGE_ALPHAS = [1.0, 10.0, 100.0, 1000.0, 10000.0]
KERNEL_GAMMAS = [0.25, 0.5, 1.0, 2.0]  # times 1 / feature count
KERNEL_ALPHAS = [0.03, 0.1, 0.3, 1.0, 3.0]
SOLVERS = ["ridge", "kernel_ridge"]  # and nystroem_M: M random training photos as the kernel's only anchors


def extract(output: Path, backbone: str, size: int, root: str, extra: list[str]) -> None:
    overrides = [
        "model=ridge_probe", f"model/backbone={backbone}", "data=biq2021", f"data.dataset.root={root}",
        f"data.eval_crops.size={size}", f"data.eval_crops.resize={size}", "data.eval_crops.count=1",
        "data.image_cache=false", "data.num_workers=1", "data.eval_batch_size=16", "threads=1", *extra,
    ]
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    with open_dict(cfg):
        cfg.paths.output_dir = str(output.parent / f"{output.stem}_run")
        cfg.paths.root_dir = str(output.parent)
    torch.set_num_threads(cfg.threads)
    datamodule = instantiate(cfg.data)
    records = datamodule.load_records().records
    net = instantiate(cfg.model.net).eval()
    module = build_module(cfg.model, net, instantiate(cfg.model.losses), cfg.optim, cfg)
    loader = datamodule.eval_loader(list(range(len(records))))
    stats, scores, rows = [], [], []
    with torch.no_grad():
        for step, batch in enumerate(loader):
            batch = module.on_after_batch_transfer(batch, 0)
            crop_stats, _ = module.crop_statistics(batch)
            stats.append(crop_stats.float())
            scores.append(batch["score"].double())
            rows.append(batch["index"])
            if step % 20 == 0:
                print(f"batch {step}: {sum(len(s) for s in scores)} of {len(records)} photos", flush=True)
    index = torch.cat(rows)
    torch.save({"stats": torch.cat(stats), "score": torch.cat(scores),
                "image_id": [records[i].image_id for i in index.tolist()],
                "backbone": backbone, "size": size, "overrides": overrides}, output)
    print(f"{output}: {len(index)} photos, {stats[0].shape[1]} features", flush=True)


def nystroem_candidates(x, y, gammas, alphas, landmarks, seed=0):
    """Kernel ridge on `landmarks` random training photos as the only anchors (subset of regressors): a
    smaller head than biqa's kernel probe, which keeps every training photo."""
    mean, scale = x.mean(dim=0), x.std(dim=0).clamp_min(1e-8)
    z = (x - mean) / scale
    d = z.shape[1]
    anchors = z[torch.randperm(len(z), generator=torch.Generator().manual_seed(seed))[:landmarks]]
    sq_nm, sq_mm = torch.cdist(z, anchors).square(), torch.cdist(anchors, anchors).square()
    coefs, labels = [], []
    for g in gammas:
        k_nm, k_mm = torch.exp(-g / d * sq_nm), torch.exp(-g / d * sq_mm)
        gram, moment = k_nm.T @ k_nm, k_nm.T @ (y - y.mean())
        for a in alphas:
            coefs.append((g, torch.linalg.solve(gram + a * k_mm + 1e-8 * torch.eye(landmarks, dtype=z.dtype), moment)))
            labels.append(f"gamma={g:g}/d,alpha={a:g}")

    def predict(q):
        sq_q = torch.cdist((q - mean) / scale, anchors).square()
        return torch.stack([torch.exp(-g / d * sq_q) @ c for g, c in coefs], dim=1) + y.mean()
    return predict, labels


def load_features(spec: str) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    parts = [torch.load(path, weights_only=False) for path in spec.split("+")]
    ids = parts[0]["image_id"]
    for part in parts[1:]:
        order = {image_id: row for row, image_id in enumerate(part["image_id"])}
        part["stats"] = part["stats"][[order[i] for i in ids]]
    return torch.cat([p["stats"] for p in parts], dim=1).double(), parts[0]["score"].double(), ids


def pick(candidates: torch.Tensor, target: torch.Tensor) -> tuple[int, float]:
    best = best_solution(candidates, target)
    return best, correlation_metrics(candidates[:, best], target)["srcc"]


def label(setting: dict[str, float]) -> str:
    return ",".join(f"{k}={v:g}" for k, v in setting.items())


def with_medians(row: dict, per_seed: list[dict]) -> dict:
    """The row with its splits and their medians of validation SRCC, test SRCC and test PLCC."""
    row["splits"] = per_seed
    for key in ("val_srcc", "test_srcc", "test_plcc"):
        row[f"median_{key}"] = statistics.median(s[key] for s in per_seed)
    return row


def evaluate(splits_dir: Path, specs: list[str], output: Path, solvers: list[str] = SOLVERS) -> None:
    seeds = sorted(splits_dir.glob("seed=*/split.json"))
    if not seeds:
        raise SystemExit(f"no seed=*/split.json under {splits_dir}: point it at a study's <variant>/<dataset>")
    rows = []
    for spec in specs:
        if "|" in spec:
            rows.append(evaluate_ensemble(seeds, spec))
            continue
        x, y, ids = load_features(spec)
        position = {image_id: row for row, image_id in enumerate(ids)}
        for solver in solvers:
            per_seed = []
            for split_file in seeds:
                split = json.loads(split_file.read_text())
                train, val, test = ([position[i] for i in split[part]] for part in ("train", "val", "test"))
                if solver in ("ridge", "kernel_ridge"):  # biqa's own solvers, as the probe fits
                    solutions, mean, scale = solve(x[train], y[train], solver == "kernel_ridge",
                                                   RIDGE_ALPHAS if solver == "ridge" else KERNEL_ALPHAS, KERNEL_GAMMAS)
                    labels = [label(setting) for setting in solutions.settings]

                    def predict(q, solutions=solutions, mean=mean, scale=scale):
                        return solutions.predict((q - mean) / scale)
                else:
                    predict, labels = nystroem_candidates(x[train], y[train], KERNEL_GAMMAS, KERNEL_ALPHAS,
                                                          int(solver.split("_")[1]))
                best, val_srcc = pick(predict(x[val]), y[val])
                test_metrics = correlation_metrics(predict(x[test])[:, best], y[test])
                per_seed.append({"seed": split_file.parent.name, "choice": labels[best], "val_srcc": val_srcc,
                                 "test_srcc": test_metrics["srcc"], "test_plcc": test_metrics["plcc"]})
            row = with_medians({"features": spec, "solver": solver, "dim": x.shape[1]}, per_seed)
            rows.append(row)
            print(f"{spec:48s} {solver:14s} d={x.shape[1]:5d}  val SRCC {row['median_val_srcc']:.4f}  "
                  f"test SRCC {row['median_test_srcc']:.4f}  PLCC {row['median_test_plcc']:.4f}  "
                  f"({', '.join(s['choice'] for s in per_seed)})", flush=True)
    output.write_text(json.dumps(rows, indent=1))
    print(f"{output}: {len(rows)} rows")


def evaluate_ensemble(seeds: list[Path], spec: str) -> dict:
    """`a.pt|b.pt`: the mean of the members' kernel-ridge predictions, each member's width and penalty picked
    on validation on its own."""
    members = []
    for member in spec.split("|"):
        x, y, ids = load_features(member)
        members.append((x, y, {image_id: row for row, image_id in enumerate(ids)}))
    per_seed = []
    for split_file in seeds:
        split = json.loads(split_file.read_text())
        val_pred, test_pred, choices = [], [], []
        for x, y, position in members:
            train, val, test = ([position[i] for i in split[part]] for part in ("train", "val", "test"))
            solutions, mean, scale = solve(x[train], y[train], True, KERNEL_ALPHAS, KERNEL_GAMMAS)
            candidates = solutions.predict((x[val] - mean) / scale)
            best, _ = pick(candidates, y[val])
            choices.append(label(solutions.settings[best]))
            val_pred.append(candidates[:, best])
            test_pred.append(solutions.predict((x[test] - mean) / scale)[:, best])
            y_val, y_test = y[val], y[test]
        val_srcc = correlation_metrics(torch.stack(val_pred).mean(0), y_val)["srcc"]
        test_metrics = correlation_metrics(torch.stack(test_pred).mean(0), y_test)
        per_seed.append({"seed": split_file.parent.name, "choice": choices, "val_srcc": val_srcc,
                         "test_srcc": test_metrics["srcc"], "test_plcc": test_metrics["plcc"]})
    row = with_medians({"features": spec, "solver": "kernel_ridge"}, per_seed)
    print(f"{spec:48s} {'kernel mean':14s}          val SRCC {row['median_val_srcc']:.4f}  "
          f"test SRCC {row['median_test_srcc']:.4f}  PLCC {row['median_test_plcc']:.4f}", flush=True)
    return row


def read_predictions(path: Path) -> dict[str, tuple[float, float]]:
    with path.open() as handle:
        return {row["image"]: (float(row["score"]), float(row["prediction"])) for row in csv.DictReader(handle)}


def ensemble_runs(study_dir: Path, val_dir: Path, variants: list[str], output: Path) -> None:
    """Equal-weight means of the study's trained models' predictions, every non-empty subset of `variants`:
    the subset is picked on each split's validation predictions (VAL_DIR/<variant>/seed_K/, from
    `biqa-eval part=val`), its held-out figures read off the jobs' test predictions."""
    subsets = [c for r in range(1, len(variants) + 1) for c in itertools.combinations(variants, r)]
    rows = {subset: [] for subset in subsets}
    seeds = sorted(p.name for p in (study_dir / variants[0] / "biq2021").glob("seed=*"))
    for seed in seeds:
        val = {v: read_predictions(val_dir / v / seed.replace("=", "_") / "test_predictions.csv") for v in variants}
        test = {v: read_predictions(study_dir / v / "biq2021" / seed / "test_predictions.csv") for v in variants}
        for subset in subsets:
            figures = {}
            for part, predictions in (("val", val), ("test", test)):
                images = sorted(predictions[subset[0]])
                target = torch.tensor([predictions[subset[0]][i][0] for i in images])
                mean = torch.tensor([[predictions[v][i][1] for i in images] for v in subset]).mean(dim=0)
                figures[part] = correlation_metrics(mean, target)
            rows[subset].append({"seed": seed, "val_srcc": figures["val"]["srcc"],
                                 "test_srcc": figures["test"]["srcc"], "test_plcc": figures["test"]["plcc"]})
    table = []
    for subset, per_seed in rows.items():
        row = with_medians({"members": list(subset)}, per_seed)
        table.append(row)
        print(f"{' + '.join(subset):60s} val SRCC {row['median_val_srcc']:.4f}  test SRCC "
              f"{row['median_test_srcc']:.4f}  PLCC {row['median_test_plcc']:.4f}", flush=True)
    picked = [max(subsets, key=lambda subset, k=k: rows[subset][k]["val_srcc"]) for k in range(len(seeds))]
    print("picked on validation: " + ", ".join(f"{seed}: {' + '.join(p)}" for seed, p in zip(seeds, picked, strict=True)))
    output.write_text(json.dumps({"subsets": table, "picked": [list(p) for p in picked]}, indent=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="action", required=True)
    ext = sub.add_parser("extract")
    ext.add_argument("output", type=Path)
    ext.add_argument("--backbone", default="efficientnet_lite0_offline")
    ext.add_argument("--size", type=int, default=384)
    ext.add_argument("--root", default="../shared/data/biq2021")
    ext.add_argument("--override", action="append", default=[], help="a further Hydra override")
    ev = sub.add_parser("evaluate")
    ev.add_argument("splits_dir", type=Path)
    ev.add_argument("features", nargs="+")
    ev.add_argument("--output", type=Path, default=Path("search.json"))
    ev.add_argument("--solvers", nargs="+", default=SOLVERS, help="ridge, kernel_ridge, nystroem_M")
    runs = sub.add_parser("ensemble-runs")
    runs.add_argument("study_dir", type=Path)
    runs.add_argument("val_dir", type=Path)
    runs.add_argument("variants", nargs="+")
    runs.add_argument("--output", type=Path, default=Path("ensembles.json"))
    args = parser.parse_args()
    if args.action == "ensemble-runs":
        ensemble_runs(args.study_dir, args.val_dir, args.variants, args.output)
    elif args.action == "extract":
        extract(args.output, args.backbone, args.size, args.root, args.override)
    else:
        evaluate(args.splits_dir, args.features, args.output, args.solvers)


if __name__ == "__main__":
    main()
