"""trieye: a stats-and-persistence sidecar for Ray programs."""

__all__: list[str] = []
