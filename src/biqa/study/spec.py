"""A study: named variants x datasets x split seeds x an override grid, expanded into one job per cell.

A study config (conf/study/NAME.yaml) names each variant by the Hydra overrides that make it, the split
seeds to repeat it over (`seed=S` sets the split and the initialisation), the datasets to train on, the
variant the deltas are measured against, and an optional grid of further overrides crossed with all of it.
Jobs are named after what they vary (`lifeiqa/synthetic/seed=1`), never after the launch time, so a
re-run of the study finds each job's folder again.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, ListConfig, OmegaConf

from biqa.config import run_name

# Keys a study sets for each job; a command-line override of one of them would silently collapse the study.
STUDY_KEYS = ("seed", "data")
# Overrides that change where and how visibly a job runs, never its result: kept out of ids and fingerprints.
RESULT_NEUTRAL = ("paths.", "threads", "data.num_workers", "data.persistent_workers", "data.pin_memory",
                  "trainer.enable_progress_bar", "trainer.enable_model_summary", "trainer.log_every_n_steps",
                  "callbacks.progress_bar")
SPEC_KEYS = {"name", "description", "variants", "reference", "datasets", "test_datasets", "seeds", "common", "grid"}


@dataclass(frozen=True)
class StudySpec:
    name: str
    variants: dict[str, list[str]]
    reference: str | None = None
    datasets: list[str] = field(default_factory=lambda: ["synthetic"])
    test_datasets: list[str] = field(default_factory=list)
    """Cross-dataset testing: every checkpoint is also tested on each of these (the whole dataset)."""
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    common: list[str] = field(default_factory=list)
    grid: dict[str, list[Any]] = field(default_factory=dict)
    description: str = ""

    def __post_init__(self) -> None:
        if not self.variants:
            raise ValueError(f"study '{self.name}' lists no variants")
        bad = [name for name in self.variants if not _is_folder_safe(name)]
        if bad:
            raise ValueError(f"variant names become folder names: use letters, digits, '_', '-', '.' only, not {bad}")
        if self.reference is not None and self.reference not in self.variants:
            raise ValueError(f"reference variant '{self.reference}' is not one of {list(self.variants)}")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"study '{self.name}' needs distinct split seeds, got {self.seeds}")
        if not self.datasets:
            raise ValueError(f"study '{self.name}' lists no datasets")
        for key in self.grid:
            if key.split("/")[0].split(".")[0] in STUDY_KEYS:
                raise ValueError(f"grid key '{key}' is set by the study itself (datasets, seeds)")

    @classmethod
    def from_config(cls, node: DictConfig | Mapping[str, Any]) -> StudySpec:
        raw = OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else dict(node)
        unknown = set(raw) - SPEC_KEYS
        if unknown:
            raise ValueError(f"unknown study keys {sorted(unknown)}; a study has {sorted(SPEC_KEYS)}")
        variants = {str(k): [str(o) for o in (v or [])] for k, v in (raw.get("variants") or {}).items()}
        return cls(
            name=str(raw["name"]),
            variants=variants,
            reference=raw.get("reference"),
            datasets=[str(d) for d in raw.get("datasets") or ["synthetic"]],
            test_datasets=[str(d) for d in raw.get("test_datasets") or []],
            seeds=[int(s) for s in raw.get("seeds") or [0, 1, 2]],
            common=[str(o) for o in raw.get("common") or []],
            grid={str(k): list(v) for k, v in (raw.get("grid") or {}).items()},
            description=str(raw.get("description") or ""),
        )

    def grid_points(self) -> list[tuple[tuple[str, str], ...]]:
        keys = list(self.grid)
        values = [[_override_value(v) for v in self.grid[k]] for k in keys]
        return [tuple(zip(keys, point, strict=True)) for point in itertools.product(*values)]


@dataclass(frozen=True)
class Job:
    """One training run of a study (or, for cross-dataset studies, one test of a trained run elsewhere)."""

    name: str
    """Folder of the job inside the study folder."""
    variant: str
    dataset: str
    seed: int
    grid: tuple[tuple[str, str], ...]
    overrides: tuple[str, ...]
    """Every task override that makes this job: the command's, the study's common ones, the variant's, the
    dataset, the seed and the grid point. Its fingerprint identifies a finished result."""
    kind: str = "train"
    test_dataset: str | None = None
    unkeyed: tuple[str, ...] = ()
    """Overrides that do not change a result (logger, devices, resume): outside the fingerprint."""

    @property
    def fingerprint(self) -> str:
        return hashlib.sha1("\n".join(self.overrides).encode()).hexdigest()[:16]

    @property
    def grid_label(self) -> str:
        return ",".join(f"{k}={v}" for k, v in self.grid)

    def metadata(self, study_id: str) -> dict[str, Any]:
        return {"study": study_id, "kind": self.kind, "name": self.name, "variant": self.variant,
                "dataset": self.dataset, "test_dataset": self.test_dataset or self.dataset, "seed": self.seed,
                "grid": self.grid_label, "fingerprint": self.fingerprint}

    def launch_overrides(self, study_id: str, study_dir: Path) -> list[str]:
        """What the launcher gets: the job's overrides, its folder and its study metadata (`study_job`)."""
        meta = [f"+study_job.{key}={_quoted(value) if isinstance(value, str) else value}"
                for key, value in self.metadata(study_id).items()]
        return [*self.overrides, *self.unkeyed, f"hydra.sweep.dir={_quoted(study_dir)}",
                f"hydra.sweep.subdir={_quoted(self.name)}", *meta]


def expand(spec: StudySpec, base_overrides: Sequence[str] = (), unkeyed: Sequence[str] = ()) -> list[Job]:
    """Every training job of the study, in a stable order: dataset, variant, grid point, seed.
    `base_overrides` (the command's) apply to every job; `unkeyed` ones too, but they do not change results."""
    check_base_overrides([*base_overrides, *unkeyed])
    jobs = []
    for dataset, variant, point, seed in itertools.product(
        spec.datasets, spec.variants, spec.grid_points(), spec.seeds
    ):
        grid_overrides = [f"{k}={v}" for k, v in point]
        overrides = last_wins([*with_variant(spec.common, spec.variants[variant]), *base_overrides,
                               f"data={dataset}", f"seed={seed}", *grid_overrides])
        parts = [variant, dataset] + ([run_name(",".join(grid_overrides))] if point else []) + [f"seed={seed}"]
        jobs.append(Job(name="/".join(parts), variant=variant, dataset=dataset, seed=seed, grid=point,
                        overrides=tuple(overrides), unkeyed=tuple(unkeyed)))
    names = [job.name for job in jobs]
    if len(set(names)) != len(names):
        raise ValueError("two jobs of the study would share a folder; make variant names and grid values distinct")
    return jobs


def cross_dataset_jobs(spec: StudySpec, trained: Mapping[Job, str]) -> list[Job]:
    """For each finished training job (-> its checkpoint), a test on every other dataset of `test_datasets`."""
    jobs = []
    for job, checkpoint in trained.items():
        for test_dataset in spec.test_datasets:
            if test_dataset == job.dataset:
                continue
            overrides = tuple(o for o in job.overrides if not o.startswith("data=")) + (
                f"data={test_dataset}", "data.split.strategy=all", f"ckpt_path={_quoted(checkpoint)}", "fit=false")
            jobs.append(Job(name=f"{job.name}/cross/{test_dataset}", variant=job.variant, dataset=job.dataset,
                            seed=job.seed, grid=job.grid, overrides=overrides, kind="cross_eval",
                            test_dataset=test_dataset, unkeyed=job.unkeyed))
    return jobs


def with_variant(common: Sequence[str], variant: Sequence[str]) -> list[str]:
    """The study's common overrides, then the variant's. A variant's `~KEY` of a KEY that the common list sets
    drops that common override instead of reaching Hydra: for a variant the shared settings do not fit (a
    model the feature cache cannot serve); any other `~KEY` stays Hydra's delete."""
    parser = OverridesParser.create()
    common_keys = [o.key_or_group for o in parser.parse_overrides(list(common))]
    drops = {o.input_line: o.key_or_group for o in parser.parse_overrides(list(variant))
             if o.is_delete() and o.key_or_group in common_keys}
    return [*(o for o, key in zip(common, common_keys, strict=True) if key not in drops.values()),
            *(o for o in variant if o not in drops)]


def last_wins(overrides: Sequence[str]) -> tuple[str, ...]:
    """Overrides in order with only the last one of each key: the variant's beat the study's common ones
    and the command's beat both (Hydra itself rejects two choices of one config group)."""
    keys = [o.key_or_group for o in OverridesParser.create().parse_overrides(list(overrides))]
    last = {key: position for position, key in enumerate(keys)}
    return tuple(o for position, (o, key) in enumerate(zip(overrides, keys, strict=True)) if last[key] == position)


def check_base_overrides(overrides: Iterable[str]) -> None:
    for override in OverridesParser.create().parse_overrides(list(overrides)):
        key = override.key_or_group
        if key in STUDY_KEYS:
            hint = "study.seeds=[...]" if key == "seed" else "study.datasets=[...]"
            raise ValueError(f"'{override.input_line}': the study sets {key} for each job; use {hint}")
        if override.is_sweep_override():
            raise ValueError(f"'{override.input_line}' is a sweep; put the values in the study's grid "
                             f"(study.grid={{{key}: [...]}})")


def split_overrides(overrides: Iterable[str], exclude_keys: Iterable[str] = ()) -> tuple[list[str], list[str], list[str]]:
    """(task overrides, the task overrides that define results, Hydra overrides): `exclude_keys` (the
    run-folder exclusions of conf/hydra: logger, resume, devices, ...) do not change a result."""
    excluded = set(exclude_keys)
    task, keyed, hydra = [], [], []
    for override in OverridesParser.create().parse_overrides(list(overrides)):
        if override.is_hydra_override():
            hydra.append(override.input_line)
            continue
        task.append(override.input_line)
        key = override.key_or_group
        if key not in excluded and not key.startswith(RESULT_NEUTRAL):
            keyed.append(override.input_line)
    return task, keyed, hydra


def _override_value(value: Any) -> str:
    if isinstance(value, (list, tuple, ListConfig)):
        return "[" + ",".join(_override_value(v) for v in value) + "]"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def _quoted(value: Any) -> str:
    text = str(value).replace("\\", "\\\\").replace("'", "\\'")
    return f"'{text}'"


def _is_folder_safe(name: str) -> bool:
    return bool(name) and all(c.isalnum() or c in "_-." for c in name) and not name.startswith(".")
