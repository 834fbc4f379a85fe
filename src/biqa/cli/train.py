import hydra
from omegaconf import DictConfig

from biqa.cli import CONFIG_DIR


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
def main(cfg: DictConfig) -> float | None:
    from biqa.engine import train

    metrics = train(cfg)
    if cfg.get("optimized_metric") is None:
        return None
    if cfg.optimized_metric not in metrics:
        raise KeyError(f"optimized_metric '{cfg.optimized_metric}' is not among the run's metrics "
                       f"({', '.join(sorted(metrics))}); set optimized_metric= to one of them")
    return metrics[cfg.optimized_metric]


if __name__ == "__main__":
    main()
