import hydra
from omegaconf import DictConfig

from biqa.cli import CONFIG_DIR


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
def main(cfg: DictConfig) -> float | None:
    from biqa.engine import train

    metrics = train(cfg)
    return metrics.get("val/srcc")


if __name__ == "__main__":
    main()
