"""The training pipeline on Ray: the ``train()`` driver, one module per actor (self-play,
evaluation), the worker pool and its size, the run's lock, and the sidecar's metrics."""
