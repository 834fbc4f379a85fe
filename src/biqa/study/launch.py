"""Run a study through Hydra: expand it, skip the jobs that finished before, hand the rest to the configured
Hydra launcher (basic: one after the other here; submitit: a Slurm job array), then write the report.

`biqa-train -m study=NAME` selects the study sweeper (`hydra_plugins.biqa_study_sweeper`), which calls
`sweep_study`; the launcher is Hydra's own plugin, configured by the usual `hydra/launcher=...` override. The
study only replaces the sweeper's Cartesian product by its list of jobs. Every job gets the folder
`<paths.log_dir>/study/<study id>/<job name>`: the study id is the study's name plus the command's
result-changing overrides, the job name what the job varies. Launch time is in neither.
"""

from __future__ import annotations

import json
import logging
import signal
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.core.plugins import Plugins
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, RunMode, TaskFunction
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from biqa.config import CONFIG_DIR, run_name
from biqa.run_folder import RESULT_FILE, read_json
from biqa.study.analysis import log_to_wandb as log_analyses_to_wandb
from biqa.study.job import request_stop
from biqa.study.records import Status, job_status, set_aside
from biqa.study.report import ReportFiles, write_report
from biqa.study.slurm import check_cluster_fits, status_lines, submit, with_slurm_states
from biqa.study.spec import (
    Job,
    StudySpec,
    cross_dataset_jobs,
    expand,
    last_wins,
    split_overrides,
    with_variant,
)

log = logging.getLogger(__name__)

STUDY_FILE = "study.json"

Compose = Callable[[Sequence[str]], DictConfig]
"""The `train` config (with its `hydra` node) for these overrides, as a multirun job would see it."""


@dataclass
class Study:
    spec: StudySpec
    study_id: str
    study_dir: Path
    jobs: list[Job]
    config: DictConfig
    """The first job's config with the study's folder as `hydra.sweep.dir`."""

    def status(self, jobs: Sequence[Job] | None = None) -> dict[Job, Status]:
        statuses = {job: job_status(self.study_dir / job.name, job) for job in (self.jobs if jobs is None else jobs)}
        return with_slurm_states(statuses, self.study_dir)

    def cross_jobs(self) -> list[Job]:
        """Tests on the other datasets of every training job that has finished (none if not cross-dataset)."""
        if not self.spec.test_datasets:
            return []
        trained = {}
        for job, status in self.status().items():
            record = read_json(self.study_dir / job.name / RESULT_FILE) if status is Status.FINISHED else None
            if record and record.get("checkpoint"):
                trained[job] = record["checkpoint"]
        return cross_dataset_jobs(self.spec, trained)

    def save(self) -> None:
        self.study_dir.mkdir(parents=True, exist_ok=True)
        content = {"study_id": self.study_id, "spec": asdict(self.spec),
                   "jobs": [asdict(job) for job in self.jobs + self.cross_jobs()]}
        (self.study_dir / STUDY_FILE).write_text(json.dumps(content, indent=1))

    def report(self) -> ReportFiles:
        return write_report(self.study_dir, self.spec, self.study_id, self.jobs + self.cross_jobs())


def is_study_argument(argument: str) -> bool:
    """`study=...`, `study.KEY=...`, and their `+`/`++`/`~` forms (e.g. `~study.variants.NAME` drops a variant)."""
    key = argument.split("=", 1)[0].lstrip("+~")
    return key == "study" or key.startswith("study.")


def prepare(study_node: DictConfig, overrides: Sequence[str], compose_job: Compose) -> Study:
    """The study `study_node` (the composed `study` config) with the command's other `overrides` applied to
    every job."""
    spec = StudySpec.from_config(study_node)
    # The command's overrides may address nodes that only the study's own overrides create
    # (e.g. feature_cache.dir after +feature_cache=...): compose them as the first variant's jobs will.
    first_variant = next(iter(spec.variants.values()))
    probe = compose_job(list(last_wins([*with_variant(spec.common, first_variant), *overrides])))
    exclude_keys = list(probe.hydra.job.config.override_dirname.exclude_keys)
    task, keyed, _ = split_overrides(overrides, exclude_keys)
    study_id = f"{spec.name}-{run_name(','.join(sorted(keyed)))}" if keyed else spec.name
    HydraConfig.instance().set_config(probe)
    study_dir = Path(probe.paths.log_dir).resolve() / "study" / study_id
    with read_write(probe.hydra), open_dict(probe.hydra):
        probe.hydra.sweep.dir = str(study_dir)
    check_distributed(probe)
    jobs = expand(spec, keyed, [o for o in task if o not in keyed])
    return Study(spec, study_id, study_dir, jobs, probe)


def load(arguments: Sequence[str]) -> Study:
    """The study of a command line (`study=NAME`, `study.*` and the jobs' overrides), composed through
    Hydra's compose API: for reading a study's records and report without running it."""
    study_args = [a for a in arguments if is_study_argument(a)]
    overrides = [a for a in arguments if a not in study_args]
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3", job_name="train"):
        study_node = compose("train", study_args).study
        if study_node is None:
            raise ValueError("name a study: study=NAME (one of conf/study/*.yaml)")
        return prepare(study_node, overrides,
                       lambda job_overrides: compose("train", list(job_overrides), return_hydra_config=True))


def sweep_study(arguments: Sequence[str], config: DictConfig, hydra_context: HydraContext,
                task_function: TaskFunction, action: str = "run", report: bool = True,
                wait: bool = True) -> dict[str, int]:
    """What the study sweeper does with the command's task overrides (`arguments`)."""
    overrides = [a for a in arguments if not is_study_argument(a)]
    config_name = config.hydra.job.config_name
    # A job composes the command's Hydra overrides again; those of the study sweeper are not its own.
    with read_write(config.hydra):
        config.hydra.overrides.hydra = [o for o in config.hydra.overrides.hydra
                                        if not o.lstrip("+~").startswith("hydra.sweeper")]

    def compose_job(job_overrides: Sequence[str]) -> DictConfig:
        return hydra_context.config_loader.load_configuration(
            config_name, [*config.hydra.overrides.hydra, *job_overrides], run_mode=RunMode.MULTIRUN)

    study = prepare(config.study, overrides, compose_job)
    if action == "report":
        print_report(study.report())
        return {}
    if action == "status":
        statuses = study.status(study.jobs + study.cross_jobs())
        print("\n".join([f"study {study.study_id} in {study.study_dir}:",
                         *status_lines(statuses, study.study_dir),
                         _counts(Counter(s.value for s in statuses.values()))]), flush=True)
        return {}
    if action == "run" and str(config.hydra.launcher.get("_target_", "")).endswith("SlurmLauncher"):
        check_cluster_fits(config.hydra.launcher)  # a config error, said before sbatch answers with a traceback
    with read_write(config.hydra), open_dict(config.hydra):
        config.hydra.sweep.dir = str(study.study_dir)
    HydraConfig.instance().set_config(config)
    launcher = Plugins.instance().instantiate_launcher(hydra_context=hydra_context, task_function=task_function,
                                                       config=config)
    counts = run(study, launcher, dry_run=action == "dry_run", wait=wait)
    print(f"launched {counts.pop('launched')}; now {', '.join(f'{n} {s}' for s, n in sorted(counts.items()))}",
          flush=True)
    if action == "run" and report and wait:
        files = study.report()
        print_report(files)
        log_summary_to_wandb(study, config, files)
    failed = counts.get("failed", 0) + counts.get("interrupted", 0)
    if failed and action == "run" and wait:
        raise RuntimeError(f"study {study.study_id}: {failed} job(s) failed or were interrupted (their job.json "
                           "says why); run the same command again to retry them")
    return counts


def run(study: Study, launcher: Launcher, dry_run: bool = False, wait: bool = True) -> dict[str, int]:
    """Runs every job that has not finished (then the cross-dataset tests); returns the final status counts."""
    launched = _run_wave(study, study.jobs, launcher, dry_run, wait)
    if study.spec.test_datasets and not dry_run and wait:
        launched += _run_wave(study, study.cross_jobs(), launcher, dry_run, wait)
    final = Counter(s.value for s in study.status(study.jobs + study.cross_jobs()).values())
    return {"launched": launched, **final}


def check_distributed(config: DictConfig) -> None:
    """Under submitit, Slurm starts one process per task and Lightning joins them; if the trainer asked for
    another number of devices, Lightning would start its own children on top."""
    launcher = config.hydra.launcher
    tasks = launcher.get("tasks_per_node")
    if tasks is None:
        return
    devices, nodes = config.trainer.get("devices", 1), config.trainer.get("num_nodes", 1)
    if str(devices) != str(tasks) or int(nodes) != int(launcher.get("nodes", 1)):
        raise ValueError(
            f"hydra.launcher.tasks_per_node={tasks} and nodes={launcher.get('nodes', 1)}, but trainer.devices="
            f"{devices} and trainer.num_nodes={nodes}: set trainer.devices={tasks} trainer.num_nodes="
            f"{launcher.get('nodes', 1)} (one Slurm task per device, so Lightning does not launch its own)"
        )


def print_report(files: ReportFiles) -> None:
    print(files.markdown.read_text())
    print(f"report: {files.markdown}, {files.summary_csv}, {files.runs_csv}, {files.plot}", flush=True)


def log_summary_to_wandb(study: Study, config: DictConfig, files: ReportFiles) -> None:
    """With logger=wandb: one summary run in the study's group holding its tables and plot."""
    project = OmegaConf.select(config, "logger.wandb.project", default=None)
    if project is None:
        return
    import pandas as pd
    import wandb

    run = wandb.init(project=str(project), group=study.study_id, job_type="summary", name=f"{study.study_id}/summary",
                     dir=str(files.markdown.parent), config={"study": asdict(study.spec), "study_id": study.study_id})
    tables = {"summary": files.summary_csv, "runs": files.runs_csv, "cross_dataset": files.cross_csv}
    for name, path in tables.items():
        if path is not None and path.stat().st_size > 1:
            run.log({name: wandb.Table(dataframe=pd.read_csv(path))})
    if files.plot is not None:
        run.log({"srcc": wandb.Image(str(files.plot))})
    log_analyses_to_wandb(run, files.analyses)
    run.finish()


def _run_wave(study: Study, jobs: list[Job], launcher: Launcher, dry_run: bool, wait: bool) -> int:
    statuses = study.status(jobs)
    pending = [job for job, status in statuses.items() if status.runnable]
    counts = Counter(status.value for status in statuses.values())
    kind = "cross-dataset tests" if jobs and jobs[0].kind == "cross_eval" else "jobs"
    print(f"study {study.study_id}: {len(jobs)} {kind} ({_counts(counts)}) in {study.study_dir}", flush=True)
    if dry_run:
        for job, status in statuses.items():
            print(f"  {status.value:11s} {job.name}: {' '.join(job.overrides)}")
        return 0
    for job, status in statuses.items():
        if status in (Status.QUEUED, Status.RUNNING):
            print(f"  {status.value:11s} {job.name}: still held by Slurm, not submitted again", flush=True)
    if not pending:
        return 0
    for job in pending:
        if statuses[job] is Status.STALE:
            moved = set_aside(study.study_dir / job.name)
            log.warning("%s: its overrides changed since it ran; the old folder is now %s", job.name, moved)
    study.save()
    job_overrides = [job.launch_overrides(study.study_id, study.study_dir) for job in pending]
    if not wait:
        submit(launcher, pending, job_overrides, study.study_dir)
        return len(pending)
    # Jobs that run in this process stop together with it on SIGTERM (Slurm jobs get submitit's handling).
    in_process = threading.current_thread() is threading.main_thread() and "BasicLauncher" in type(launcher).__name__
    previous = signal.signal(signal.SIGTERM, request_stop) if in_process else None
    try:
        launcher.launch(job_overrides, initial_job_idx=0)
    finally:
        if in_process:
            signal.signal(signal.SIGTERM, previous)
    return len(pending)


def _counts(counts: Counter) -> str:
    return ", ".join(f"{n} {name}" for name, n in sorted(counts.items())) or "none"
