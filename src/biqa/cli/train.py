from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from biqa.config import CONFIG_DIR


# `biqa-train -m study=NAME` runs a study (the study sweeper); any other `-m` runs Hydra's sweepers (basic,
# Optuna). Every job, whichever sweeper and launcher, gets the same records and W&B run (biqa.study.job).
@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
def main(cfg: DictConfig) -> float | None:
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    from biqa.engine import train
    from biqa.study.job import record_termination

    try:
        metrics = train(cfg)
    except SIGTERMException:
        # A SystemExit: Hydra's job callbacks do not see it, so the state file is updated here.
        record_termination(Path(cfg.paths.output_dir))
        raise
    if cfg.get("optimized_metric") is None or not cfg.get("fit", True):
        return None
    if cfg.optimized_metric not in metrics and HydraConfig.get().mode == RunMode.MULTIRUN:
        # A sweeper needs the number; a single run that finished is not failed for lack of it.
        raise KeyError(f"optimized_metric '{cfg.optimized_metric}' is not among the run's metrics "
                       f"({', '.join(sorted(metrics))}); set optimized_metric= to one of them")
    return metrics.get(cfg.optimized_metric)


if __name__ == "__main__":
    main()
