"""The data layer: a stream's samples in one pool (`pool`), datasets as tensors of ids into it
(`dataset`), the stream types (`stream`), a user's data turned into tensors (`inputs`; image
folders decoded once, `folders` and `cache`), the protocols applied to any stream (`protocols`) and
batched augmentation (`transforms`). The public faces are `replaycli.benchmarks`,
`replaycli.generators` and `replaycli.loaders`; the file formats are `replaycli.sources`."""
