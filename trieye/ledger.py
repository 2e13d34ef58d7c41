"""Which of each client's events the sidecar has accounted for, so that a restarted sidecar can
say exactly how many events died with the process before it. Pure Python, no I/O.

A client numbers its events 0, 1, 2, ... in the order it ships them. Each batch carries the
number of its first event and `acked`: the client has seen every batch before that number
return from the actor, so none of them is still on its way. Per client, the ledger keeps the
ranges of event numbers that are accounted for: written to the sinks by an earlier process of
the actor (as persisted in run.json), received by this process, or already counted as lost.

Ray retries the calls in flight when the actor restarts, and runs retries out of order, so a
range can arrive late (it is not lost) or twice (the first delivery was already written): the
ledger tells the actor which parts of a batch are new, and counts a missing range as lost only
once `acked` has passed it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

Span = tuple[int, int]
"""Event numbers start (inclusive) to end (exclusive)."""


def _uncovered(spans: Sequence[Span], start: int, end: int) -> list[Span]:
    """The parts of [start, end) outside `spans` (sorted, disjoint)."""
    parts: list[Span] = []
    cursor = start
    for low, high in spans:
        if high <= cursor:
            continue
        if low >= end:
            break
        if low > cursor:
            parts.append((cursor, low))
        cursor = high
        if cursor >= end:
            break
    if cursor < end:
        parts.append((cursor, end))
    return parts


def _merge(spans: Sequence[Span], start: int, end: int) -> list[Span]:
    """`spans` with [start, end) added, still sorted, disjoint and with no two touching."""
    merged: list[Span] = []
    for low, high in spans:
        if high < start or low > end:
            merged.append((low, high))
        else:
            start, end = min(start, low), max(end, high)
    merged.append((start, end))
    merged.sort()
    return merged


class DeliveryLedger:
    """Per client id, the sorted, disjoint spans of its event numbers accounted for."""

    def __init__(self, spans: Mapping[str, Sequence[Sequence[int]]] | None = None) -> None:
        self._spans: dict[str, list[Span]] = {}
        for client, client_spans in (spans or {}).items():
            merged: list[Span] = []
            for low, high in client_spans:
                merged = _merge(merged, low, high)
            self._spans[client] = merged

    def receive(self, client: str, first: int, count: int) -> list[Span]:
        """Account for a batch of `count` events numbered from `first`; return the parts of it
        not accounted for before, as offsets into the batch."""
        spans = self._spans.setdefault(client, [])
        end = first + count
        if not spans or spans[-1][1] <= first:
            # The usual case, a batch right after the previous one: O(1).
            if spans and spans[-1][1] == first:
                spans[-1] = (spans[-1][0], end)
            else:
                spans.append((first, end))
            return [(0, count)]
        fresh = _uncovered(spans, first, end)
        self._spans[client] = _merge(spans, first, end)
        return [(low - first, high - first) for low, high in fresh]

    def settle(self, client: str, acked: int) -> int:
        """Every event numbered below `acked` has arrived or never will: account for them and
        return how many were missing (lost)."""
        spans = self._spans.setdefault(client, [])
        if acked <= 0 or (spans and spans[0][0] == 0 and spans[0][1] >= acked):
            return 0
        lost = sum(high - low for low, high in _uncovered(spans, 0, acked))
        self._spans[client] = _merge(spans, 0, acked)
        return lost

    def forget(self, client: str) -> None:
        """Drop a client that closed: it sends nothing more."""
        self._spans.pop(client, None)

    def state(self) -> dict[str, list[Span]]:
        """A copy to persist; `DeliveryLedger(state)` continues from it."""
        return {client: list(spans) for client, spans in self._spans.items()}
