"""A study expands into the right jobs, named by what they vary, with the command's overrides in charge."""

from pathlib import Path

import pytest

from biqa.study.launch import load
from biqa.study.spec import Job, StudySpec, cross_dataset_jobs, expand, last_wins


def spec(**changes) -> StudySpec:
    fields = {"name": "s", "variants": {"a": ["model=pooled"], "b": ["model=lifeiqa", "ablation=lifeiqa/no_gcn"]},
              "reference": "a", "datasets": ["synthetic"], "seeds": [0, 1, 2],
              "common": ["model/backbone=efficientnet_lite0_offline"]}
    return StudySpec(**{**fields, **changes})


def test_variants_datasets_and_seeds_expand_into_one_job_each():
    jobs = expand(spec(datasets=["synthetic", "koniq10k"]))
    assert len(jobs) == 2 * 2 * 3
    assert jobs[0].name == "a/synthetic/seed=0" and jobs[-1].name == "b/koniq10k/seed=2"
    b = next(j for j in jobs if j.name == "b/koniq10k/seed=1")
    assert b.overrides == ("model/backbone=efficientnet_lite0_offline", "model=lifeiqa", "ablation=lifeiqa/no_gcn",
                           "data=koniq10k", "seed=1")
    assert len({j.fingerprint for j in jobs}) == len(jobs)


def test_grid_crosses_everything_and_names_its_point():
    jobs = expand(spec(seeds=[0], grid={"optim.lr": [1e-4, 3e-4], "model.net.dropout": [0.0]}))
    assert [j.name for j in jobs] == [
        "a/synthetic/optim.lr=0.0001,model.net.dropout=0.0/seed=0",
        "a/synthetic/optim.lr=0.0003,model.net.dropout=0.0/seed=0",
        "b/synthetic/optim.lr=0.0001,model.net.dropout=0.0/seed=0",
        "b/synthetic/optim.lr=0.0003,model.net.dropout=0.0/seed=0",
    ]
    assert jobs[1].overrides[-2:] == ("optim.lr=0.0003", "model.net.dropout=0.0")


def test_command_overrides_beat_the_study_and_the_variant_beats_common():
    study = spec(variants={"a": ["model=pooled", "model/backbone=test_resnet"]}, seeds=[0])
    (job,) = expand(study, ["model/backbone=test_efficientnet", "trainer.max_epochs=1"], ["logger=wandb"])
    assert job.overrides == ("model=pooled", "model/backbone=test_efficientnet", "trainer.max_epochs=1",
                             "data=synthetic", "seed=0")
    assert "logger=wandb" in job.launch_overrides("s", Path("/s")) and "logger=wandb" not in job.overrides
    assert last_wins(["x=1", "y=2", "x=3"]) == ("y=2", "x=3")


def test_a_variant_drops_a_common_override_with_tilde_and_other_deletes_reach_hydra():
    study = spec(common=["+feature_cache=frozen_trunk", "feature_cache.until_stage=3", "trainer.max_epochs=2"],
                 variants={"cached": ["model=pooled"], "live": ["model=dgiqa", "~feature_cache.until_stage",
                                                                "~feature_cache", "~callbacks.progress_bar"]},
                 reference="cached", seeds=[0])
    cached, live = expand(study)
    assert cached.overrides == ("+feature_cache=frozen_trunk", "feature_cache.until_stage=3", "trainer.max_epochs=2",
                                "model=pooled", "data=synthetic", "seed=0")
    assert live.overrides == ("trainer.max_epochs=2", "model=dgiqa", "~callbacks.progress_bar", "data=synthetic",
                              "seed=0")


def test_unkeyed_overrides_do_not_change_the_fingerprint():
    (plain,) = expand(spec(seeds=[0], variants={"a": []}))
    (logged,) = expand(spec(seeds=[0], variants={"a": []}), unkeyed=["logger=wandb"])
    (longer,) = expand(spec(seeds=[0], variants={"a": []}), ["trainer.max_epochs=9"])
    assert plain.fingerprint == logged.fingerprint != longer.fingerprint


@pytest.mark.parametrize("override, message", [("seed=3", "study.seeds"), ("data=koniq10k", "study.datasets"),
                                               ("optim.lr=1e-4,3e-4", "grid")])
def test_overrides_that_would_collapse_the_study_are_refused(override, message):
    with pytest.raises(ValueError, match=message):
        expand(spec(), [override])


def test_bad_studies_are_refused():
    with pytest.raises(ValueError, match="reference"):
        spec(reference="c")
    with pytest.raises(ValueError, match="folder"):
        spec(variants={"a/b": []})
    with pytest.raises(ValueError, match="seeds"):
        spec(seeds=[1, 1])
    with pytest.raises(ValueError, match="unknown study keys"):
        StudySpec.from_config({"name": "x", "variants": {"a": []}, "seedz": [1]})


def test_cross_dataset_jobs_test_each_checkpoint_on_the_other_datasets():
    study = spec(datasets=["synthetic", "kadid10k"], test_datasets=["synthetic", "kadid10k", "tid2013"], seeds=[0])
    trained = {job: f"/ckpt/{job.name}.ckpt" for job in expand(study)}
    jobs = cross_dataset_jobs(study, trained)
    names = sorted(j.name for j in jobs)
    assert "a/synthetic/seed=0/cross/kadid10k" in names and "a/synthetic/seed=0/cross/synthetic" not in names
    assert len(jobs) == 4 * 2
    job = next(j for j in jobs if j.name == "a/kadid10k/seed=0/cross/tid2013")
    assert job.kind == "cross_eval" and job.test_dataset == "tid2013"
    assert "data=tid2013" in job.overrides and "data=kadid10k" not in job.overrides
    assert "data.split.strategy=all" in job.overrides and "ckpt_path='/ckpt/a/kadid10k/seed=0.ckpt'" in job.overrides


def test_study_id_and_folder_come_from_the_results_defining_overrides_only(tmp_path):
    base = ["study=smoke", f"paths.root_dir={tmp_path}"]
    plain = load(base + ["logger=wandb", "data.num_workers=0", "threads=1", "hydra/launcher=local"])
    assert plain.study_id == "smoke" and plain.study_dir == tmp_path / "logs" / "study" / "smoke"
    assert [j.name for j in plain.jobs] == ["linear/synthetic/seed=0", "linear/synthetic/seed=1",
                                            "mlp/synthetic/seed=0", "mlp/synthetic/seed=1"]
    changed = load(base + ["trainer.max_epochs=3", "study.seeds=[4]"])
    assert changed.study_id == "smoke-trainer.max_epochs=3"
    assert [j.name for j in changed.jobs] == ["linear/synthetic/seed=4", "mlp/synthetic/seed=4"]


def test_every_shipped_study_expands(tmp_path):
    from biqa.config import CONFIG_DIR

    for path in sorted((Path(CONFIG_DIR) / "study").glob("*.yaml")):
        study = load([f"study={path.stem}", f"paths.root_dir={tmp_path}"])
        assert study.jobs and all(isinstance(j, Job) for j in study.jobs), path.stem
        if study.spec.reference:
            assert any(j.variant == study.spec.reference for j in study.jobs)


def test_jobs_launched_together_get_their_own_folders_whatever_the_clock(tmp_path):
    study = load(["study=head_to_head", f"paths.root_dir={tmp_path}"])
    launched = [job.launch_overrides(study.study_id, study.study_dir) for job in study.jobs]
    subdirs = [next(o for o in overrides if o.startswith("hydra.sweep.subdir=")) for overrides in launched]
    assert all(f"hydra.sweep.dir='{study.study_dir}'" in overrides for overrides in launched)
    assert len(set(subdirs)) == len(study.jobs) == 18
    sweep = study.config.hydra.sweep
    assert "now:" not in str(sweep.dir) + str(sweep.subdir)
    assert str(sweep.dir) == str(study.study_dir)


def test_prefixed_study_arguments_edit_the_study_not_the_jobs(tiny_study_args):
    from biqa.study.launch import load

    study = load([*tiny_study_args, "++study.seeds=[1]", "~study.variants.mlp"])
    assert [(job.variant, job.seed) for job in study.jobs] == [("linear", 1)]
    assert not any("study" in override.split("=")[0] for job in study.jobs for override in job.overrides)
