import hydra
from omegaconf import DictConfig

from biqa.config import CONFIG_DIR


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="pretrain_distortion")
def main(cfg: DictConfig) -> None:
    from biqa.lit.contrastive import pretrain_distortion_encoder

    checkpoint = pretrain_distortion_encoder(cfg)
    print(
        f"distortion encoder: {checkpoint}\ntrain BFRD with: biqa-train model=bfrd model.net.distortion_checkpoint={checkpoint}"
    )


if __name__ == "__main__":
    main()
