"""From records to batches: the datamodule, decoding and K-crop cutting, the resized-image cache and the
resumable epoch order."""
