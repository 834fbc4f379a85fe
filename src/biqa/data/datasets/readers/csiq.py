"""CSIQ (Larson and Chandler 2010): 866 distorted images of 30 references, 6 types at 4-5 levels."""

from __future__ import annotations

from pathlib import Path

from biqa.data.datasets.readers.builder import RecordsBuilder, SourceRow
from biqa.data.datasets.readers.tables import read_csv, read_xlsx, to_float, to_text
from biqa.data.datasets.records import DatasetRecords, ScoreScale

SCALE = ScoreScale(0.0, 1.0, higher_is_better=False, name="DMOS")
DISTORTION_TYPES = ["awgn", "jpeg", "jpeg2000", "fnoise", "blur", "contrast"]
# The spreadsheet's dst_type -> (type index, its tag in file names); the folder is the type's name.
TYPE_OF_LABEL = {
    "noise": (0, "AWGN"),
    "awgn": (0, "AWGN"),
    "jpeg": (1, "JPEG"),
    "jpeg 2000": (2, "jpeg2000"),
    "jpeg2000": (2, "jpeg2000"),
    "fnoise": (3, "fnoise"),
    "blur": (4, "BLUR"),
    "contrast": (5, "contrast"),
}
COLUMNS = ["image", "dst_type", "dst_lev", "dmos"]


class CSIQ:
    """The released `csiq.DMOS.xlsx` (sheet `all_by_image`: `image, dst_type, dst_lev, dmos`), or a CSV
    with those columns, with `dst_imgs/<type>/<image>.<TAG>.<level>.png` and `src_imgs/<image>.png`.

    DMOS 0-1, lower is better; type is a 0-based index into `distortion_types`, level as listed (1-5).
    """

    def __init__(
        self,
        root: str | Path,
        scores_file: str = "csiq.DMOS.xlsx",
        sheet: str = "all_by_image",
        image_folder: str = "dst_imgs",
        reference_folder: str = "src_imgs",
    ):
        self.root = root
        self.scores_file = scores_file
        self.sheet = sheet
        self.image_folder = image_folder
        self.reference_folder = reference_folder

    def __call__(self) -> DatasetRecords:
        builder = RecordsBuilder("csiq", self.root)
        (scores_path,) = builder.require(self.scores_file, folders=[self.image_folder])
        if scores_path.suffix.casefold() == ".csv":
            table = read_csv(scores_path)
        else:
            table = read_xlsx(scores_path, required=COLUMNS, sheet=self.sheet)
        image_column, type_column, level_column, score_column = (table.column(name) for name in COLUMNS)
        for row in table.rows:
            image, label = to_text(row.values[image_column]), to_text(row.values[type_column])
            level = to_text(row.values[level_column])
            distortion_type, tag = TYPE_OF_LABEL.get(label.casefold(), (None, label))
            folder = DISTORTION_TYPES[distortion_type] if distortion_type is not None else label
            builder.add(
                f"{self.image_folder}/{folder}/{image}.{tag}.{level}.png",
                to_float(row.values[score_column]),
                SourceRow(self.scores_file, row.number),
                reference_id=builder.reference(f"{self.reference_folder}/{image}.png"),
                distortion_type=distortion_type,
                distortion_level=int(level) if level.isdigit() else None,
            )
        return builder.build(SCALE, distortion_types=DISTORTION_TYPES)
