"""LIVE Image Quality Assessment Database, release 2 (Sheikh et al. 2006): 779 distorted images of 29 references."""

from __future__ import annotations

from pathlib import Path

from biqa.data.datasets.readers.builder import RecordsBuilder, SourceRow
from biqa.data.datasets.readers.tables import load_mat, mat_numbers, mat_strings
from biqa.data.datasets.records import DatasetRecords, ScoreScale

REFERENCE_NAMES_FILE = "refnames_all.mat"
DMOS_FILES = {False: ("dmos.mat", "dmos"), True: ("dmos_realigned.mat", "dmos_new")}
SCALE = ScoreScale(0.0, 100.0, higher_is_better=False, name="DMOS")
# The .mat arrays list every image of each folder in this order; folder images are numbered img1.bmp, img2.bmp, ...
FOLDERS = (("jp2k", 227), ("jpeg", 233), ("wn", 174), ("gblur", 174), ("fastfading", 174))
DISTORTION_TYPES = [folder for folder, _ in FOLDERS]


class LIVE:
    """`dmos.mat` (`dmos`, `orgs`), `refnames_all.mat`, and the folders `jp2k/ jpeg/ wn/ gblur/ fastfading/`.

    Entries with `orgs == 1` are copies of the references and are dropped. `realigned` reads the
    realigned scores of `dmos_realigned.mat` (`dmos_new`) that many works use. DMOS: lower is better.
    """

    def __init__(self, root: str | Path, realigned: bool = False, reference_folder: str = "refimgs"):
        self.root = root
        self.realigned = realigned
        self.reference_folder = reference_folder

    def __call__(self) -> DatasetRecords:
        builder = RecordsBuilder("live", self.root)
        dmos_file, dmos_variable = DMOS_FILES[self.realigned]
        dmos_path, references_path = builder.require(
            dmos_file, REFERENCE_NAMES_FILE, folders=[folder for folder, _ in FOLDERS]
        )
        scores = load_mat(dmos_path, dmos_variable, "orgs")
        dmos, originals = mat_numbers(scores[dmos_variable]), mat_numbers(scores["orgs"])
        references = mat_strings(load_mat(references_path, "refnames_all")["refnames_all"])
        expected = sum(count for _, count in FOLDERS)
        lengths = {
            dmos_file: len(dmos),
            f"{dmos_file} orgs": len(originals),
            REFERENCE_NAMES_FILE: len(references),
        }
        if set(lengths.values()) != {expected}:
            raise ValueError(f"live: expected {expected} entries per array (release 2), found {lengths}")
        entry = 0
        for distortion_type, (folder, count) in enumerate(FOLDERS):
            for number in range(1, count + 1):
                if originals[entry] != 1:
                    builder.add(
                        f"{folder}/img{number}.bmp",
                        dmos[entry],
                        SourceRow(dmos_file, entry + 1),
                        reference_id=builder.reference(f"{self.reference_folder}/{references[entry]}"),
                        distortion_type=distortion_type,
                    )
                entry += 1
        return builder.build(SCALE, distortion_types=DISTORTION_TYPES)
