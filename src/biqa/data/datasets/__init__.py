"""Datasets as their owners distribute them (readers), the embedded synthetic one and its distortion
generator, the records every reader yields, their validation, and the split protocols."""
