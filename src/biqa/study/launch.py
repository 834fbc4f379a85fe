"""Run a study: expand it, skip the jobs that finished before, hand the rest to the configured Hydra
launcher (basic: one after the other here; submitit: a Slurm job array), then write the report.

The launcher is Hydra's own plugin, configured by the usual `hydra/launcher=...` override; the study only
replaces the sweeper's cartesian product by its list of jobs. Every job gets the folder
`<paths.log_dir>/study/<study id>/<job name>`: the study id is the study's name plus the command's
result-changing overrides, the job name what the job varies. Launch time is in neither.
"""

from __future__ import annotations

import json
import logging
import signal
import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from hydra._internal.callbacks import Callbacks
from hydra._internal.hydra import Hydra
from hydra._internal.utils import create_config_search_path
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.core.plugins import Plugins
from hydra.types import HydraContext, RunMode
from omegaconf import DictConfig

from biqa.config import CONFIG_DIR, run_name
from biqa.run_folder import RESULT_FILE, read_json
from biqa.study.job import request_stop, run_study_job
from biqa.study.records import Status, job_status, set_aside
from biqa.study.report import ReportFiles, write_report
from biqa.study.spec import Job, StudySpec, cross_dataset_jobs, expand, last_wins, split_overrides

log = logging.getLogger(__name__)

STUDY_FILE = "study.json"


@dataclass
class Study:
    spec: StudySpec
    study_id: str
    study_dir: Path
    jobs: list[Job]
    hydra: Hydra
    config: DictConfig
    """The launch config: `train` composed with the command's overrides (launcher, sweep folder)."""

    def status(self, jobs: Sequence[Job] | None = None) -> dict[Job, Status]:
        return {job: job_status(self.study_dir / job.name, job) for job in (self.jobs if jobs is None else jobs)}

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


def prepare(arguments: Sequence[str], configure_logging: bool = False) -> Study:
    """`study=NAME` and `study.*` arguments choose and edit the study; all others go to every job
    (and `hydra/launcher=...`, `hydra.launcher.*` to the launcher)."""
    study_args = [a for a in arguments if is_study_argument(a)]
    overrides = [a for a in arguments if a not in study_args]
    GlobalHydra.instance().clear()
    hydra = Hydra.create_main_hydra2(task_name="train", config_search_path=create_config_search_path(CONFIG_DIR))
    spec = StudySpec.from_config(hydra.compose_config("sweep", study_args, run_mode=RunMode.RUN).study)

    # The command's overrides may address nodes that only the study's own overrides create
    # (e.g. feature_cache.dir after +feature_cache=...): compose them as the first variant's jobs will.
    first_variant = next(iter(spec.variants.values()))
    probe = hydra.compose_config("train", list(last_wins([*spec.common, *first_variant, *overrides])),
                                 run_mode=RunMode.MULTIRUN)
    exclude_keys = list(probe.hydra.job.config.override_dirname.exclude_keys)
    task, keyed, _ = split_overrides(overrides, exclude_keys)
    study_id = f"{spec.name}-{run_name(','.join(sorted(keyed)))}" if keyed else spec.name
    HydraConfig.instance().set_config(probe)
    study_dir = Path(probe.paths.log_dir).resolve() / "study" / study_id

    config = hydra.compose_config("train", [*last_wins([*spec.common, *first_variant, *overrides]),
                                            f"hydra.sweep.dir='{study_dir}'"],
                                  run_mode=RunMode.MULTIRUN, with_log_configuration=configure_logging)
    check_distributed(config)
    jobs = expand(spec, keyed, [o for o in task if o not in keyed])
    return Study(spec, study_id, study_dir, jobs, hydra, config)


def run(study: Study, dry_run: bool = False) -> dict[str, int]:
    """Runs every job that has not finished (then the cross-dataset tests); returns the final status counts."""
    launched = _run_wave(study, study.jobs, dry_run)
    if study.spec.test_datasets and not dry_run:
        launched += _run_wave(study, study.cross_jobs(), dry_run)
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


def _run_wave(study: Study, jobs: list[Job], dry_run: bool) -> int:
    statuses = study.status(jobs)
    pending = [job for job, status in statuses.items() if status is not Status.FINISHED]
    counts = Counter(status.value for status in statuses.values())
    kind = "cross-dataset tests" if jobs and jobs[0].kind == "cross_eval" else "jobs"
    print(f"study {study.study_id}: {len(jobs)} {kind} ({_counts(counts)}) in {study.study_dir}", flush=True)
    if dry_run:
        for job, status in statuses.items():
            print(f"  {status.value:11s} {job.name}: {' '.join(job.overrides)}")
        return 0
    if not pending:
        return 0
    for job in pending:
        if statuses[job] is Status.STALE:
            moved = set_aside(study.study_dir / job.name)
            log.warning("%s: its overrides changed since it ran; the old folder is now %s", job.name, moved)
    study.save()
    # What Hydra's own sweepers do with their job lists (Hydra has no public call for it).
    HydraConfig.instance().set_config(study.config)
    context = HydraContext(config_loader=study.hydra.config_loader, callbacks=Callbacks(study.config))
    launcher = Plugins.instance().instantiate_launcher(hydra_context=context, task_function=run_study_job,
                                                       config=study.config)
    # Jobs that run in this process stop together with it on SIGTERM (Slurm jobs get submitit's handling).
    in_process = threading.current_thread() is threading.main_thread() and "BasicLauncher" in str(
        study.config.hydra.launcher.get("_target_", ""))
    previous = signal.signal(signal.SIGTERM, request_stop) if in_process else None
    try:
        launcher.launch([job.launch_overrides(study.study_id) for job in pending], initial_job_idx=0)
    finally:
        if in_process:
            signal.signal(signal.SIGTERM, previous)
    return len(pending)


def _counts(counts: Counter) -> str:
    return ", ".join(f"{n} {name}" for name, n in sorted(counts.items())) or "none"
