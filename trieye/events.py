"""The event that callers emit; the actor alone decides what it becomes."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

ContextValue = float | int | str
# What travels in a client's batch: (name, value, global_step, context or None). Plain tuples
# because building a pydantic model per event would cost the caller more than the send itself.
WireEvent = tuple[str, float, int, dict[str, ContextValue] | None]


class RawMetricEvent(BaseModel):
    """One observation at one global step. Non-finite values are accepted here and dropped
    (and counted) by the actor, so a NaN loss shows up in the counters instead of an exception
    inside the training loop."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    value: float = 1.0
    global_step: int
    context: dict[str, ContextValue] = Field(default_factory=dict)

    def to_wire(self) -> WireEvent:
        return (self.name, self.value, self.global_step, dict(self.context) or None)
