"""emu's own settings (the worker's limits and retries), read from the environment
by productsearch.settings' reader like every other setting: a malformed value raises
ConfigError naming the variable. The shared parts (queues, index, embedding) are
productsearch.settings' classes."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, ClassVar

from productsearch.settings import EnvSection, Var


class EmuEnv(EnvSection):
    """The variables of EmuSettings."""

    # Counted in changes, not messages (a message holds one change or 150): three
    # lookups' worth keeps the model fed while a write is in flight, and is work in
    # hand that the shutdown grace can finish on a GPU.
    EMU_MAX_CHANGES_IN_FLIGHT: Annotated[int, Var(
        "changes emu holds at once (it stops receiving above this)", minimum=1, maximum=100_000)] = 3000
    # While changes keep coming emu gathers them into one lookup for up to this long
    # (a pause ends it sooner): longer means fewer index requests and read units per
    # change under a steady stream, and as much added latency for its changes.
    EMU_BATCH_WINDOW_SECONDS: Annotated[float, Var(
        "the longest emu gathers a steady stream of changes into one index lookup", minimum=0.0, maximum=5.0)] = 1.0
    EMU_INDEX_REQUESTS_IN_FLIGHT: Annotated[int, Var(
        "index requests one write keeps in flight at once", minimum=1, maximum=32)] = 4
    EMU_VISIBILITY_TIMEOUT_SECONDS: Annotated[int, Var(
        "how long emu leases a message (the queue's visibility timeout)", minimum=10, maximum=43200)] = 300
    EMU_MAX_INDEX_ATTEMPTS: Annotated[int, Var(
        "attempts of one index request", minimum=1, maximum=100)] = 8
    # The container's stopTimeout: SIGKILL follows SIGTERM this long after (ECS's
    # default is 30 s, Fargate's maximum 120 s; compute sets it and passes it here).
    EMU_STOP_TIMEOUT_SECONDS: Annotated[float, Var(
        "the container's stopTimeout, within which emu finishes or hands back its work", minimum=2.0)] = 30.0
    # A failed message's next delivery waits base * 2^(receives - 1), at most max:
    # 15 s, 30 s, 1 min, 2 min, then 4 min before the fifth and last receive that
    # the queue's redrive policy allows (messaging/: maxReceiveCount 5); the cap is
    # EmuSettings.retry_max_seconds.
    EMU_RETRY_BASE_SECONDS: Annotated[float, Var(
        "a failed message's first redelivery delay", minimum=0.0)] = 15.0
    EMU_OUTAGE_RETRY_MAX_SECONDS: Annotated[float, Var(
        "while the index is down, the longest wait between two retries of the batch in hand", minimum=0.1)] = 30.0
    # It must stay far below the visibility timeout, or a request that outlived its
    # message could land after the next writer's.
    EMU_INDEX_TIMEOUT_SECONDS: Annotated[float, Var(
        "each index request's deadline", minimum=0.1)] = 10.0


@dataclass(frozen=True)
class EmuSettings:
    """emu's worker: the fields are EmuEnv's variables (EMU_*), with the bounds and
    reasons given there, except retry_max_seconds (the cap of a handed-back message's
    redelivery delay, 15 minutes as SQS's largest DelaySeconds, a constructor
    default). Raises ConfigError on a value out of range."""

    ENV_SECTIONS: ClassVar[tuple[type[EnvSection], ...]] = (EmuEnv,)

    max_changes_in_flight: int
    visibility_timeout_seconds: int
    max_index_attempts: int
    stop_timeout_seconds: float
    retry_base_seconds: float = 15.0
    retry_max_seconds: float = 900.0
    outage_retry_max_seconds: float = 30.0
    index_timeout_seconds: float = 10.0
    batch_window_seconds: float = 1.0
    index_requests_in_flight: int = 4

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> EmuSettings:
        """Raises ConfigError naming the variable that is malformed."""
        e = EmuEnv.read(env)
        return cls(
            max_changes_in_flight=e.EMU_MAX_CHANGES_IN_FLIGHT,
            batch_window_seconds=e.EMU_BATCH_WINDOW_SECONDS,
            index_requests_in_flight=e.EMU_INDEX_REQUESTS_IN_FLIGHT,
            visibility_timeout_seconds=e.EMU_VISIBILITY_TIMEOUT_SECONDS,
            max_index_attempts=e.EMU_MAX_INDEX_ATTEMPTS,
            stop_timeout_seconds=e.EMU_STOP_TIMEOUT_SECONDS,
            retry_base_seconds=e.EMU_RETRY_BASE_SECONDS,
            outage_retry_max_seconds=e.EMU_OUTAGE_RETRY_MAX_SECONDS,
            index_timeout_seconds=e.EMU_INDEX_TIMEOUT_SECONDS,
        )
