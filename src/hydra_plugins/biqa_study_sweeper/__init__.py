"""biqa's Hydra plugins: the study sweeper."""
