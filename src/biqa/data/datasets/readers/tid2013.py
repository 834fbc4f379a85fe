"""TID2013 (Ponomarenko et al. 2015): 25 references x 24 distortion types x 5 levels."""

from __future__ import annotations

import re
from pathlib import Path

from biqa.data.datasets.readers.builder import RecordsBuilder, SourceRow
from biqa.data.datasets.readers.tables import read_text_lines, to_float
from biqa.data.datasets.records import DatasetRecords, ScoreScale

SCORES_FILE = "mos_with_names.txt"
SCALE = ScoreScale(0.0, 9.0, higher_is_better=True, name="MOS")
DISTORTION_TYPES = [
    "additive_gaussian_noise",
    "additive_noise_in_color_components",
    "spatially_correlated_noise",
    "masked_noise",
    "high_frequency_noise",
    "impulse_noise",
    "quantization_noise",
    "gaussian_blur",
    "image_denoising",
    "jpeg",
    "jpeg2000",
    "jpeg_transmission_errors",
    "jpeg2000_transmission_errors",
    "non_eccentricity_pattern_noise",
    "local_block_wise_distortions",
    "mean_shift",
    "contrast_change",
    "change_of_color_saturation",
    "multiplicative_gaussian_noise",
    "comfort_noise",
    "lossy_compression_of_noisy_images",
    "color_quantization_with_dither",
    "chromatic_aberrations",
    "sparse_sampling_and_reconstruction",
]
# i01_03_5.bmp: reference 01, distortion type 03, level 5 (all 1-based).
DISTORTED_NAME = re.compile(r"^I(\d+)_(\d+)_(\d+)\.\w+$", re.IGNORECASE)


class TID2013:
    """`mos_with_names.txt` (lines `mos name`) with `distorted_images/` and `reference_images/`.

    Type (0-based index into `distortion_types`) and level (1-5, as named) come from the name. The
    reference id is the reference image's path as on disk, which absorbs the release's case quirks
    (`I01.BMP` ... but `i25.bmp`).
    """

    def __init__(
        self,
        root: str | Path,
        image_folder: str = "distorted_images",
        reference_folder: str = "reference_images",
    ):
        self.root = root
        self.image_folder = image_folder
        self.reference_folder = reference_folder

    def __call__(self) -> DatasetRecords:
        builder = RecordsBuilder("tid2013", self.root)
        (scores_path,) = builder.require(SCORES_FILE, folders=[self.image_folder])
        for row in read_text_lines(scores_path):
            name = row.values.get("1", "")
            labels = DISTORTED_NAME.match(name)
            builder.add(
                f"{self.image_folder}/{name}",
                to_float(row.values["0"]),
                SourceRow(SCORES_FILE, row.number),
                reference_id=builder.reference(f"{self.reference_folder}/I{labels[1]}.BMP")
                if labels
                else None,
                distortion_type=int(labels[2]) - 1 if labels else None,
                distortion_level=int(labels[3]) if labels else None,
            )
        return builder.build(SCALE, distortion_types=DISTORTION_TYPES)
