"""Studies: a config of variants x datasets x split seeds, run by any Hydra launcher, resumable, reported."""
