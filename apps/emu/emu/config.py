"""emu's own settings (the worker's limits and retries). The two that follow from
the deployment (the queue's visibility timeout, the container's stopTimeout) are
environment variables that compute sets (the fields with a validation_alias); the
rest are tuning: constructor parameters and `emu run` options, which no deployment
sets. The shared parts
(queues, index, embedding) are productsearch.settings' classes."""

from __future__ import annotations


from pydantic import Field
from pydantic_settings import CliSuppress

from productsearch.env import EnvTuning


class EmuSettings(EnvTuning):
    """emu's worker: visibility_timeout_seconds and stop_timeout_seconds are
    environment variables (compute sets them), the rest tuning with the bounds and
    reasons given here."""

    visibility_timeout_seconds: CliSuppress[int] = Field(
        300, validation_alias="EMU_VISIBILITY_TIMEOUT_SECONDS", ge=10, le=43200,
        description="how long emu leases a message (the queue's visibility timeout)")
    # The container's stopTimeout: SIGKILL follows SIGTERM this long after (AWS docs,
    # ContainerDefinition stopTimeout: ECS's default is 30 s, Fargate's maximum 120 s;
    # compute sets it and passes it here).
    stop_timeout_seconds: CliSuppress[float] = Field(
        30.0, validation_alias="EMU_STOP_TIMEOUT_SECONDS", ge=2.0, le=120.0,
        description="the container's stopTimeout, within which emu finishes or hands back its work")
    # Counted in changes, not messages (a message holds one change or 150): three
    # lookups' worth keeps the model fed while a write is in flight, and is work in
    # hand that the shutdown grace can finish on a GPU.
    max_changes_in_flight: int = Field(
        3000, ge=1, le=100_000, description="changes emu holds at once (it stops receiving above this)")
    # While changes keep coming emu gathers them into one lookup for up to this long
    # (a pause ends it sooner): longer means fewer index requests and read units per
    # change under a steady stream, and as much added latency for its changes.
    batch_window_seconds: float = Field(
        1.0, ge=0.0, le=5.0, description="the longest emu gathers a steady stream of changes into one index lookup")
    index_requests_in_flight: int = Field(
        4, ge=1, le=32, description="index requests one write keeps in flight at once")
    max_index_attempts: int = Field(8, ge=1, le=100, description="attempts of one index request")
    # A failed message's next delivery waits base * 2^(receives - 1), at most max:
    # 15 s, 30 s, 1 min, 2 min, then 4 min before the fifth and last receive that
    # the queue's redrive policy allows (messaging/: maxReceiveCount 5). The cap is
    # SQS's largest DelaySeconds, 15 minutes.
    retry_base_seconds: float = Field(
        15.0, ge=0.0, le=900.0, description="a failed message's first redelivery delay")
    retry_max_seconds: float = Field(
        900.0, ge=0.0, le=900.0, description="the cap of a handed-back message's redelivery delay")
    outage_retry_max_seconds: float = Field(
        30.0, ge=0.1, le=900.0, description="while the index is down, the longest wait between two retries of the batch in hand")
    # It must stay far below the visibility timeout, or a request that outlived its
    # message could land after the next writer's: at most the default visibility
    # timeout (EMU_VISIBILITY_TIMEOUT_SECONDS).
    index_timeout_seconds: float = Field(10.0, ge=0.1, le=300.0, description="each index request's deadline")
