"""The miniature datasets of `debug=rehearsal`: each is read by its dataset's own reader, as distributed."""

import pytest
from hydra.utils import get_class

from biqa.data.datasets.miniature import WRITERS, write_miniature
from biqa.data.datasets.validation import validate

# Reader options the recipes use on top of the defaults.
OPTIONS = {"biqa.data.datasets.readers.live.LIVE": {"realigned": True},
           "biqa.data.datasets.readers.koniq10k.KonIQ10k": {"image_folder": "1024x768"}}
OFFICIAL_SPLITS = {"KonIQ10k": {"train", "val", "test"}, "FLIVE": {"train", "test"}, "BIQ2021": {"train", "test"}}


@pytest.mark.parametrize("reader", sorted(WRITERS), ids=lambda r: r.rsplit(".", 1)[-1])
def test_each_miniature_reads_and_validates_through_its_real_reader(tmp_path, reader):
    root = write_miniature(reader, tmp_path / "mini", images=12)
    records = validate(get_class(reader)(root, **OPTIONS.get(reader, {}))(), on_error="raise", check_decode=True)
    assert len(records) >= 10
    scores = [record.score for record in records.records]
    assert min(scores) >= 0 and max(scores) <= 1 and len(set(scores)) > 5
    name = reader.rsplit(".", 1)[-1]
    assert set(records.official_splits) == OFFICIAL_SPLITS.get(name, set())
    # Synthetic datasets keep their reference and distortion labels, so splits go by reference.
    if name in ("KADID10k", "TID2013", "CSIQ", "LIVE"):
        assert records.has_references and len({r.reference_id for r in records.records}) >= 2


def test_a_miniature_is_written_once(tmp_path):
    reader = "biqa.data.datasets.readers.koniq10k.KonIQ10k"
    root = write_miniature(reader, tmp_path / "k", images=12)
    stamp = (root / "koniq10k_scores_and_distributions.csv").stat().st_mtime_ns
    write_miniature(reader, tmp_path / "k", images=12)
    assert (root / "koniq10k_scores_and_distributions.csv").stat().st_mtime_ns == stamp
    with pytest.raises(ValueError, match="no miniature layout for reader biqa.data.datasets.readers.pipal.PIPAL"):
        write_miniature("biqa.data.datasets.readers.pipal.PIPAL", tmp_path / "p")
