"""hydra-submitit-launcher's launchers, able to submit without waiting (`hydra.sweeper.wait=false` of a study):
`submit` hands the jobs to Slurm and returns their submitit handles; `launch` (Hydra's Launcher interface)
submits and waits, as the plugin it extends does."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, filter_overrides
from omegaconf import OmegaConf

try:
    from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
    from hydra_plugins.hydra_submitit_launcher.submitit_launcher import LocalLauncher, SlurmLauncher
except ImportError:  # the optional `slurm` extra is not installed: these launchers do not exist then
    LocalLauncher = SlurmLauncher = None

log = logging.getLogger(__name__)


class _Submitting:
    """What both executors share: the job array of `job_overrides`, submitted, not waited for."""

    _EXECUTOR: str
    params: dict[str, Any]

    def submit(self, job_overrides: list[list[str]], initial_job_idx: int) -> list[Any]:
        import submitit

        init_keys = {"submitit_folder", "max_num_timeout"}
        executor = submitit.AutoExecutor(
            cluster=self._EXECUTOR, folder=self.params["submitit_folder"],
            **{f"{self._EXECUTOR}_{key}": value for key, value in self.params.items() if key == "max_num_timeout"})
        base = set(OmegaConf.structured(BaseQueueConf).keys())
        executor.update_parameters(**{key if key in base else f"{self._EXECUTOR}_{key}": value
                                      for key, value in self.params.items() if key not in init_keys})
        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        arguments = []
        for index, overrides in enumerate(job_overrides, start=initial_job_idx):
            log.info("\t#%d : %s", index, " ".join(filter_overrides(overrides)))
            arguments.append((list(overrides), "hydra.sweep.dir", index, f"job_id_for_{index}",
                              Singleton.get_state()))
        return executor.map_array(self, *zip(*arguments, strict=True))

    def launch(self, job_overrides: list[list[str]], initial_job_idx: int) -> list[JobReturn]:
        return [job.results()[0] for job in self.submit(job_overrides, initial_job_idx)]


if SlurmLauncher is not None:
    class SubmittingSlurmLauncher(_Submitting, SlurmLauncher):
        pass

    class SubmittingLocalLauncher(_Submitting, LocalLauncher):
        pass
