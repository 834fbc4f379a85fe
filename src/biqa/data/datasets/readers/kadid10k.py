"""KADID-10k (Lin et al. 2019): 81 references x 25 distortion types x 5 levels."""

from __future__ import annotations

import re
from pathlib import Path

from biqa.data.datasets.readers.builder import RecordsBuilder, SourceRow
from biqa.data.datasets.readers.tables import read_csv, to_float, to_text
from biqa.data.datasets.records import DatasetRecords, ScoreScale

SCORES_FILE = "dmos.csv"
# Despite its column name `dmos`, KADID's score is a mean opinion on a 1-5 scale, higher is better.
SCALE = ScoreScale(1.0, 5.0, higher_is_better=True, name="MOS")
DISTORTION_TYPES = [
    "gaussian_blur",
    "lens_blur",
    "motion_blur",
    "color_diffusion",
    "color_shift",
    "color_quantization",
    "color_saturation_1",
    "color_saturation_2",
    "jpeg2000",
    "jpeg",
    "white_noise",
    "white_noise_color_component",
    "impulse_noise",
    "multiplicative_noise",
    "denoise",
    "brighten",
    "darken",
    "mean_shift",
    "jitter",
    "non_eccentricity_patch",
    "pixelate",
    "quantization",
    "color_block",
    "high_sharpen",
    "contrast_change",
]
# I01_03_05.png: reference 01, distortion type 03, level 05 (all 1-based).
DISTORTED_NAME = re.compile(r"^I\d+_(\d+)_(\d+)\.\w+$", re.IGNORECASE)


class KADID10k:
    """`dmos.csv` (`dist_img,ref_img,dmos,var`) with distorted and reference images together in `images/`.

    Distortion type (0-based index into `distortion_types`) and level (1-5, as named) come from the name
    (`I01_03_05.png`); the reference id is the reference image's path.
    """

    def __init__(self, root: str | Path, image_folder: str = "images"):
        self.root = root
        self.image_folder = image_folder

    def __call__(self) -> DatasetRecords:
        builder = RecordsBuilder("kadid10k", self.root)
        (scores_path,) = builder.require(SCORES_FILE, folders=[self.image_folder])
        table = read_csv(scores_path)
        distorted_column, reference_column = table.column("dist_img"), table.column("ref_img")
        score_column = table.column("dmos")
        for row in table.rows:
            name = to_text(row.values[distorted_column])
            labels = DISTORTED_NAME.match(name)
            builder.add(
                f"{self.image_folder}/{name}",
                to_float(row.values[score_column]),
                SourceRow(SCORES_FILE, row.number),
                reference_id=builder.reference(
                    f"{self.image_folder}/{to_text(row.values[reference_column])}"
                ),
                distortion_type=int(labels[1]) - 1 if labels else None,
                distortion_level=int(labels[2]) if labels else None,
            )
        return builder.build(SCALE, distortion_types=DISTORTION_TYPES)
