"""One reader per dataset layout, each a callable `Reader(root, ...)()` returning `DatasetRecords`.

`READERS` names them as `conf/data/<name>.yaml` does; classes are imported on first use, so listing the
choices never loads SciPy or openpyxl.
"""

from __future__ import annotations

import difflib
import importlib

READERS: dict[str, str] = {
    "synthetic": "biqa.data.datasets.synthetic.SyntheticIQA",
    "koniq10k": "biqa.data.datasets.readers.koniq10k.KonIQ10k",
    "livec": "biqa.data.datasets.readers.livec.LIVEChallenge",
    "spaq": "biqa.data.datasets.readers.spaq.SPAQ",
    "flive": "biqa.data.datasets.readers.flive.FLIVE",
    "biq2021": "biqa.data.datasets.readers.biq2021.BIQ2021",
    "kadid10k": "biqa.data.datasets.readers.kadid10k.KADID10k",
    "live": "biqa.data.datasets.readers.live.LIVE",
    "csiq": "biqa.data.datasets.readers.csiq.CSIQ",
    "tid2013": "biqa.data.datasets.readers.tid2013.TID2013",
    "pipal": "biqa.data.datasets.readers.pipal.PIPAL",
    "custom_csv": "biqa.data.datasets.readers.custom_csv.CustomCSV",
}


def reader_class(name: str) -> type:
    """The reader registered as `name`; an unknown name fails with the valid ones and the closest match."""
    if name not in READERS:
        close = difflib.get_close_matches(name.casefold(), READERS, n=1, cutoff=0.5)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"Unknown dataset {name!r}.{hint} Choose one of: {', '.join(READERS)}.")
    module_name, class_name = READERS[name].rsplit(".", 1)
    return getattr(importlib.import_module(module_name), class_name)
