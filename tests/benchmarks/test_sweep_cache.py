"""benchmarks/sweep_cache.py runs exactly the variants it is asked for (the study has more)."""

import pytest
from tests.benchmarks.conftest import load_benchmark

from biqa.study.launch import load


@pytest.mark.parametrize("variants, seeds", [(["pooled", "lifeiqa"], 1), (None, 3)])
def test_the_study_holds_exactly_the_named_variants_on_the_named_splits(tmp_path, variants, seeds):
    script = load_benchmark("sweep_cache")
    chosen = variants or list(script.VARIANTS)
    assert len(script.study_variants()) > len(chosen)  # the study has variants the benchmark must drop
    args = script.parser().parse_args(["--seeds", str(seeds), *(["--variants", *variants] if variants else [])])
    study = load(script.study_arguments(args, tmp_path, "features"))
    assert sorted({job.variant for job in study.jobs}) == sorted(chosen)
    assert len(study.jobs) == len(chosen) * seeds
