"""Workarounds for two kafka-python 3.0 group-coordinator bugs that break a consumer group member.

:func:`apply` runs (idempotently) each time :mod:`faceflow.kafka.clients` makes a group consumer,
before the consumer exists; consumers without a group never rebalance and need neither fix.

1. **A rebalance that completes between two polls is never finished.** ``join_group_async`` runs
   JoinGroup -> SyncGroup as a background task and waits for it only as long as the caller's
   ``poll(timeout_ms)`` allows. If the task completes while nobody waits (the service is busy
   between polls), the next poll re-enters the join only ``while need_rejoin()``; for the group
   leader ``need_rejoin()`` has already turned False (its own assignment reset the metadata snapshot
   that asked for the rejoin), so the result is never applied: the member stays ``REBALANCING``
   for good, heartbeats stay disabled, every commit fails locally ("the consumer is not part of an
   active group") and the broker drops the member after its session timeout, while it keeps
   fetching. A service that polls briefly while a Triton call runs hits this at almost every
   start: the first assignment is made before the topic's metadata is known, which asks for a
   second one at once. When it does not hit, the unobserved result is thrown away and a fresh
   JoinGroup is sent (one generation more). The fix applies a finished, successful join task in
   ``join_group_async`` and makes ``need_rejoin()`` true while such a task waits.

2. **Polls spin while heartbeats are disabled.** ``poll()`` waits no longer than the time to the
   next heartbeat; while heartbeats are disabled (during a join) that time is 0, so ``poll`` busy-
   loops for its whole timeout: a core burnt next to the model server. As the Java client does
   since KAFKA-10134, no heartbeat is due while heartbeats are disabled.

Both patches wrap the library's methods and call through; :func:`apply` refuses (ConfigError) a
kafka-python whose methods are not the ones patched, rather than guessing. Tests:
``tests/kafka/test_compat.py`` (a real broker, a member that polls briefly with gaps).
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable
from typing import Any

import kafka
from kafka.coordinator.base import BaseCoordinator, MemberState
from kafka.coordinator.consumer import ConsumerCoordinator

from faceflow.errors import ConfigError

logger = logging.getLogger(__name__)

#: The kafka-python releases these patches were written against (and tested with).
PATCHED_SERIES = "3.0."
_APPLIED = "_faceflow_patched"


def _finished_join(coordinator: Any) -> Any | None:
    """The coordinator's join task if it completed successfully and was not applied yet, else None."""
    task = getattr(coordinator, "_join_task", None)
    if task is not None and task.is_done and task.exception is None:
        return task
    return None


def _patch_join(original: Any) -> Any:
    @functools.wraps(original)
    async def join_group_async(self: Any, timeout_ms: Any = None) -> Any:
        task = _finished_join(self)
        if task is not None:
            # What the library does when its own wait sees the task finish (base.py, 3.0.12).
            self._join_task = None
            with self._lock:
                self.rejoining = False
                self.rejoin_needed = False
                self.state = MemberState.STABLE
                self._enable_heartbeat()
            generation = self._generation
            logger.debug("kafka compat: applying a join that finished between polls (%s)", generation)
            await self._on_join_complete_async(
                generation.generation_id, generation.member_id, generation.protocol, task.value
            )
            if not self.need_rejoin():
                return True
        return await original(self, timeout_ms)

    setattr(join_group_async, _APPLIED, True)
    return join_group_async


def _patch_need_rejoin(original: Any) -> Any:
    @functools.wraps(original)
    def need_rejoin(self: Any) -> bool:
        return _finished_join(self) is not None or bool(original(self))

    setattr(need_rejoin, _APPLIED, True)
    return need_rejoin


def _patch_time_to_next_heartbeat(original: Any) -> Any:
    @functools.wraps(original)
    def time_to_next_heartbeat(self: Any) -> float:
        if not getattr(self, "_heartbeat_enabled", True):
            return float("inf")
        return float(original(self))

    setattr(time_to_next_heartbeat, _APPLIED, True)
    return time_to_next_heartbeat


def _check(cls: type, name: str, *, needs: tuple[str, ...]) -> Any:
    method = cls.__dict__.get(name)
    if method is None:
        raise ConfigError(
            f"kafka-python {kafka.__version__}: expected {cls.__name__}.{name}, which faceflow patches "
            f"(faceflow.kafka.compat); got none: install kafka-python {PATCHED_SERIES}x"
        )
    source = inspect.getsource(method)
    missing = [n for n in needs if n not in source]
    if missing:
        raise ConfigError(
            f"kafka-python {kafka.__version__}: {cls.__name__}.{name} no longer uses {missing}, so "
            f"faceflow's workaround (faceflow.kafka.compat) may not fit it: install kafka-python "
            f"{PATCHED_SERIES}x"
        )
    return method


#: (class, method, names its source must still use, the wrapper) for every patch.
_PATCHES: tuple[tuple[type, str, tuple[str, ...], Callable[[Any], Any]], ...] = (
    (BaseCoordinator, "join_group_async", ("_join_task", "need_rejoin", "STABLE"), _patch_join),
    (ConsumerCoordinator, "need_rejoin", ("_assignment_snapshot",), _patch_need_rejoin),
    (BaseCoordinator, "time_to_next_heartbeat", ("heartbeat",), _patch_time_to_next_heartbeat),
)


def _is_patched(cls: type, name: str) -> bool:
    return bool(getattr(cls.__dict__.get(name), _APPLIED, False))


def apply() -> None:
    """Install the workarounds (idempotent).

    Raises:
        ConfigError: the installed kafka-python is not a release these patches fit.
    """
    if not kafka.__version__.startswith(PATCHED_SERIES):
        raise ConfigError(
            f"kafka-python: expected a {PATCHED_SERIES}x release (faceflow.kafka.compat patches its group "
            f"coordinator), got {kafka.__version__}"
        )
    for cls, name, needs, patch in _PATCHES:
        if not _is_patched(cls, name):
            setattr(cls, name, patch(_check(cls, name, needs=needs)))


def applied() -> bool:
    """True once :func:`apply` has patched the coordinator."""
    return all(_is_patched(cls, name) for cls, name, _, _ in _PATCHES)
