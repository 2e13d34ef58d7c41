"""The caller's side: start the sidecar, find it by name, and send it events and saves."""

from __future__ import annotations

import atexit
import logging
import time
import uuid
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import ray

from trieye.config import TrieyeConfig, validate_metric_name
from trieye.context import RunContext
from trieye.events import ContextValue, WireEvent
from trieye.persistence import LoadedCheckpoint, Validator, check_buffer, check_state

logger = logging.getLogger(__name__)


# Ray destroys a non-detached actor once its creator drops every handle, even a named one;
# holding the handle here lets `start_actor(...)` be called without keeping its result.
_started: dict[str, Any] = {}


class SaveFailure(NamedTuple):
    """A checkpoint save the actor could not complete."""

    step: int
    error: BaseException
    """What the actor raised, e.g. OSError(ENOSPC) for a full disk."""
    next_step: int | None = None
    """The step of the save handed to the actor right after this one, which tried again to
    save what this one could not; None when there was none yet."""


@dataclass
class _PendingSave:
    ref: ray.ObjectRef[Path]
    step: int
    next_step: int | None = None


class SidecarNotFoundError(LookupError):
    """No trieye actor is registered under the run's name in the connected Ray cluster."""


class SidecarDiedError(RuntimeError):
    """The run's actor is dead for good: its process died more often than `max_restarts`
    allows, or it was killed without restart. Files it already wrote are intact."""


def start_actor(
    ctx: RunContext,
    config: TrieyeConfig | None = None,
    *,
    detached: bool = False,
    max_restarts: int = 3,
) -> Any:
    """Create the run's sidecar actor, or return the running one (then `config` is ignored).

    Call it in the driver after `ray.init`. The actor takes no CPU slot (num_cpus=0), so it
    never keeps a worker from being scheduled. `detached=True` lets it outlive the driver,
    which only works on a cluster started with `ray start`.
    """
    if not ray.is_initialized():
        raise RuntimeError("call ray.init(...) before trieye.start_actor(...)")
    from trieye.actor import TrieyeActor  # keeps `import trieye` light for worker processes

    handle = TrieyeActor.options(  # type: ignore[attr-defined]
        name=ctx.actor_name,
        namespace=ctx.namespace,
        get_if_exists=True,
        lifetime="detached" if detached else None,
        num_cpus=0,
        max_restarts=max_restarts,
        max_task_retries=max_restarts,
    ).remote(ctx, config if config is not None else TrieyeConfig())
    _started[ctx.actor_name] = handle
    return handle


def connect(ctx: RunContext) -> TrieyeClient:
    """A client for the run's sidecar, from any process attached to the same Ray cluster."""
    if not ray.is_initialized():
        raise RuntimeError("call ray.init(...) before trieye.connect(...)")
    try:
        actor = ray.get_actor(ctx.actor_name, namespace=ctx.namespace)
    except ValueError as exc:
        raise SidecarNotFoundError(
            f"no trieye actor {ctx.actor_name!r} in Ray namespace {ctx.namespace!r}: the driver "
            "must call trieye.start_actor(ctx, config) first, in the same Ray cluster, with a "
            f"RunContext for the same data root ({ctx.root_dir}) and run name"
        ) from exc
    return TrieyeClient(actor, ctx.actor_name)


class TrieyeClient:
    """Buffers events locally and ships them to the sidecar in batches.

    `log` costs the caller a tuple append; a batch leaves when it holds `client_batch_size`
    events or its first event is `client_batch_seconds` old (checked on each `log`). At most
    `client_max_inflight_batches` batches are in flight: past that, shipping waits for the
    oldest, which keeps the actor's queue bounded when it falls behind. Not thread-safe: use
    one client per thread (they are cheap).

    Each batch carries the client's id, the number of its first event and how many events
    the client knows have arrived, so that an actor restarted after a crash can count exactly
    the events that died with the old process (see trieye.ledger).
    """

    def __init__(self, actor: Any, actor_name: str) -> None:
        self._actor = actor
        self._actor_name = actor_name
        self._dead = False
        settings = self._get(actor.client_settings.remote())
        self._batch_size = int(settings["batch_size"])
        self._batch_seconds = float(settings["batch_seconds"])
        self._max_inflight = int(settings["max_inflight_batches"])
        self._max_pending_saves = int(settings["max_pending_saves"])
        self._batch: list[WireEvent] = []
        self._deadline = 0.0
        self._client_id = uuid.uuid4().hex
        self._shipped = 0
        """Events shipped so far: the number of the next batch's first event."""
        self._acked = 0
        """Every batch before this event number has returned from the actor."""
        self._inflight: deque[tuple[ray.ObjectRef[None], int]] = deque()
        """Batches not known to have returned, each with the number one past its last event."""
        self._saves: list[_PendingSave] = []
        """Saves handed to the actor and not yet seen to finish, each with its step."""
        self._failed: list[SaveFailure] = []
        self._known_names: set[str] = set()
        self._closed = False
        self._max_inflight_seen = 0  # read by bench/trieye_bench.py: the queue stays bounded
        atexit.register(self._close_at_exit)

    # ---------------------------------------------------------------- events

    def log(self, name: str, value: float, step: int, **context: ContextValue) -> None:
        """Record `value` of `name` at global `step`; extra keywords travel as context."""
        if name not in self._known_names:
            self._known_names.add(validate_metric_name(name))
        batch = self._batch
        if not batch:
            self._deadline = time.monotonic() + self._batch_seconds
        batch.append((name, float(value), int(step), context or None))
        if len(batch) >= self._batch_size or time.monotonic() >= self._deadline:
            self._ship()

    def log_dict(self, metrics: Mapping[str, float], step: int) -> None:
        """``log`` each of ``metrics`` at ``step``: one call per step for a set of scalars."""
        for name, value in metrics.items():
            self.log(name, value, step)

    def log_event(
        self, name: str, step: int, context: dict[str, ContextValue], value: float = 1.0
    ) -> None:
        """Record an event whose facts are in `context`; specs with `context_key` pick them out."""
        self.log(name, value, step, **context)

    def _ship(self) -> None:
        if self._closed:
            raise RuntimeError("this trieye client is closed")
        if not self._batch:
            return
        batch, self._batch = self._batch, []
        if len(self._inflight) >= self._max_inflight:
            oldest, end = self._inflight.popleft()
            self._get(oldest)  # back-pressure; also raises the actor's errors
            self._acked = end
        first = self._shipped
        self._shipped += len(batch)
        ref = self._actor.ingest.remote(batch, self._client_id, first, self._acked)
        self._inflight.append((ref, self._shipped))
        self._max_inflight_seen = max(self._max_inflight_seen, len(self._inflight))

    def deliver(self) -> None:
        """Ship pending events and wait until the actor holds them all; unlike `flush`, leave
        writing them to the sinks to the actor's own cadence."""
        self._ship()
        self._get([ref for ref, _ in self._inflight])
        self._inflight.clear()
        self._acked = self._shipped

    def flush(self) -> None:
        """Ship pending events, wait until the actor has them, and have it write every sink."""
        self._flush(closing=False)

    def _flush(self, closing: bool) -> None:
        self.deliver()
        self._get(self._actor.flush.remote(self._client_id, self._acked, closing))

    def close(self) -> None:
        """Flush and wait for pending checkpoint saves. Idempotent; also runs at exit.

        Failed saves nobody took with `failed_saves()` are logged as errors here."""
        if self._closed:
            return
        self._flush(closing=True)
        self._settle_saves(wait_for=len(self._saves))
        for failure in self.failed_saves():
            logger.error("trieye: the checkpoint save of step %d failed: %s", *failure)
        self._closed = True
        atexit.unregister(self._close_at_exit)

    def _close_at_exit(self) -> None:
        if self._dead:
            return  # the caller was told, by a SidecarDiedError
        if not ray.is_initialized():
            if self._batch or self._inflight or self._saves:
                logger.error(
                    "trieye: Ray was shut down before the client was closed; %d events and %d "
                    "pending saves may be lost (call client.close() before ray.shutdown())",
                    len(self._batch),
                    len(self._saves),
                )
            return
        self.close()

    def _get(self, refs: Any) -> Any:
        """`ray.get` of actor calls, with the actor's permanent death made one clear error."""
        if self._dead:
            raise SidecarDiedError(self._death_message())
        try:
            return ray.get(refs)
        except ray.exceptions.ActorDiedError as err:
            self._dead = True
            raise SidecarDiedError(self._death_message()) from err

    def _death_message(self) -> str:
        return (
            f"the trieye actor {self._actor_name!r} died and will not be restarted (it died "
            "more often than its max_restarts allow, or was killed for good); events and "
            "saves it had not finished are lost, files it already wrote are intact"
        )

    # ---------------------------------------------------------------- checkpoints

    def save_checkpoint(
        self,
        step: int,
        state: dict[str, Any],
        buffer: dict[str, np.ndarray] | None = None,
        is_best: bool = False,
    ) -> ray.ObjectRef[Path]:
        """Hand a checkpoint to the actor without waiting for the write (unless
        `client_max_pending_saves` saves are already pending: then it waits for the oldest).

        `state` may hold tensors, numbers, strings and nested dicts/lists of them; `buffer`
        maps names to numeric arrays. `ray.get` on the returned ref gives the checkpoint path
        or raises what went wrong; `failed_saves()` also lists every save that failed, so a
        caller that never waits on its refs still learns of them (a full disk fails saves
        without failing the next one).
        """
        check_state(state)
        if buffer is not None:
            check_buffer(buffer)
        if self._dead:
            raise SidecarDiedError(self._death_message())
        if self._saves:
            self._saves[-1].next_step = step
        # Back-pressure: every pending save pins its payload in the object store.
        self._settle_saves(wait_for=len(self._saves) - self._max_pending_saves + 1)
        self._ship()
        state_ref = ray.put(state)
        buffer_ref = None if buffer is None else ray.put(buffer)
        ref: ray.ObjectRef[Path] = self._actor.save_checkpoint.remote(
            step, state_ref, buffer_ref, is_best, [batch for batch, _ in self._inflight]
        )
        self._saves.append(_PendingSave(ref, step))
        return ref

    def failed_saves(self) -> list[SaveFailure]:
        """The saves found to have failed since the last call, oldest first (checks finished
        saves without waiting for pending ones)."""
        self._settle_saves(wait_for=0)
        failed, self._failed = self._failed, []
        return failed

    def saved_path(self, save: ray.ObjectRef[Path]) -> Path:
        """Wait for a save returned by `save_checkpoint`; its checkpoint's path. A failed save
        raises here, and then neither `failed_saves()` nor `close()` reports it again."""
        try:
            path: Path = self._get(save)
        finally:
            self._saves = [pending for pending in self._saves if pending.ref != save]
        return path

    def _settle_saves(self, wait_for: int) -> None:
        """Wait until the oldest `wait_for` pending saves have finished (none when <= 0), and
        move every finished one out of the pending list, keeping the failures."""
        if wait_for > 0:
            ray.wait([save.ref for save in self._saves[:wait_for]], num_returns=wait_for)
        pending = []
        for save in self._saves:
            if not ray.wait([save.ref], timeout=0)[0]:
                pending.append(save)
                continue
            try:
                self._get(save.ref)
            except ray.exceptions.RayTaskError as err:
                self._failed.append(SaveFailure(save.step, err.cause or err, save.next_step))
        self._saves = pending

    def load_latest(
        self, validate: Validator | None = None, validate_buffer: Validator | None = None
    ) -> LoadedCheckpoint | None:
        """The newest checkpoint that verifies, loads without running code and passes
        `validate`, with the newest such buffer snapshot not newer than it (passing
        `validate_buffer`); the files skipped on the way are named in `warnings`. The validators
        run in the sidecar's process, so they must be picklable (module-level functions or
        `functools.partial` of them)."""
        loaded: LoadedCheckpoint | None = self._get(
            self._actor.load_latest.remote(validate, validate_buffer)
        )
        return loaded

    # ---------------------------------------------------------------- the run

    def run_info(self) -> dict[str, Any]:
        info: dict[str, Any] = self._get(self._actor.run_info.remote())
        return info

    def set_status(self, status: str, reason: str | None = None) -> None:
        """Set the run status in run.json and MLflow: RUNNING, FINISHED, STOPPED (asked to
        stop, its work saved: MLflow shows it as FINISHED), FAILED or KILLED; `reason` says why
        the run ended (run.json's ``end_reason``, the MLflow tag ``trieye.end_reason``)."""
        self._get(self._actor.set_status.remote(status, reason))

    def set_tags(self, tags: Mapping[str, str]) -> None:
        """Set MLflow tags of the run, e.g. ``mlflow.source.name`` or ``mlflow.note.content``."""
        self._get(self._actor.set_tags.remote(dict(tags)))

    def log_params(self, params: dict[str, Any]) -> list[str]:
        """Log nested params as MLflow params; returns keys whose value changed on a resume."""
        changed: list[str] = self._get(self._actor.log_params.remote(params))
        return changed

    def log_artifact(self, path: Path | str, artifact_path: str | None = None) -> None:
        self._get(self._actor.log_artifact.remote(str(Path(path).resolve()), artifact_path))

    def log_text(self, text: str, artifact_file: str) -> None:
        self._get(self._actor.log_text.remote(text, artifact_file))

    def shutdown_actor(self) -> None:
        """Flush, end the MLflow run, close the writers, then kill the actor."""
        self.close()
        self._get(self._actor.shutdown.remote())
        ray.kill(self._actor, no_restart=True)
        _started.pop(self._actor_name, None)
