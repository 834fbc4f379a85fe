"""Data, split by job: `datasets` (what a dataset is on disk or how it is generated: readers, records,
validation, splits), `loading` (the pipeline from records to batches: datamodule, crops, caches, resumable
order) and `derived` (inputs that a network computes once: depth maps, frozen-backbone features)."""
