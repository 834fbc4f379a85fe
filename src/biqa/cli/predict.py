import hydra
from omegaconf import DictConfig

from biqa.config import CONFIG_DIR


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="predict")
def main(cfg: DictConfig) -> None:
    from biqa.predict import predict_folder

    predict_folder(cfg)


if __name__ == "__main__":
    main()
