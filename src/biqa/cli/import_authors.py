import hydra
from omegaconf import DictConfig

from biqa.config import CONFIG_DIR


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="import_authors")
def main(cfg: DictConfig) -> None:
    from biqa.engine import import_authors

    import_authors(cfg)


if __name__ == "__main__":
    main()
