import hydra
from omegaconf import DictConfig

from biqa.config import CONFIG_DIR


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="eval")
def main(cfg: DictConfig) -> None:
    from biqa.engine import evaluate

    evaluate(cfg)


if __name__ == "__main__":
    main()
