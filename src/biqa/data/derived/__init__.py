"""Inputs a network computes once per image and caches on disk: depth maps and frozen-backbone features."""
