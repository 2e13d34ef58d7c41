"""The training pipeline on Ray: the ``train()`` driver, one module per actor (self-play,
evaluation), the worker pool, the run's name, config and lock, and the sidecar's metrics."""
