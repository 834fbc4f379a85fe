"""Thin Hydra entry points: each composes its config from conf/ and hands it to the layer below."""
