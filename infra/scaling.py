"""How far emu and pelican scale, and what their autoscaling aims for.

emu scales on the changes waiting per task, pelican on the age of its oldest unshipped
change: the work, not the CPU. The per-task throughputs below are ESTIMATES, to be
replaced by the capacity model (benchmarks/capacity.py over results/cost.json); each
config key that depends on them takes 0 for "derive it from these" and any other value
as given (compute/Pulumi.yaml).
"""
from __future__ import annotations

import math

# ESTIMATE: changes/s one emu task indexes at catalog-sized text changes. CPU: a
# 2-vCPU Fargate task; docs/benchmarks.md measured 190-260 rows/s end to end on two
# cores with torch. GPU: one g4dn.xlarge (T4); an H200 did 1,360-1,867 rows/s end to
# end (results/bench-gpu.json), bounded by the pipeline more than by the model, and a
# T4 has a fraction of an H200's fp16 throughput.
EMU_CHANGES_PER_SECOND_PER_TASK = {"cpu": 250, "gpu": 1000}
# ESTIMATE: changes/s one pelican task (0.25 vCPU) ships. It used 0.3 CPU s for 10,000
# changes in docs/benchmarks.md (about 33,000 changes per CPU second); what bounds it is
# a database round trip and a SendMessageBatch of up to 1,500 changes per claim, not CPU.
PELICAN_CHANGES_PER_SECOND_PER_TASK = 5000
# emu's target is the changes one task clears in about this long.
CLEAR_WITHIN_SECONDS = 60
# Maximums carry the peak rate twice over: at peak, a backlog left by an outage or a
# burst drains as fast as it built up.
CATCH_UP_FACTOR = 2

# Pinecone docs, "Rate limits" (docs.pinecone.io/reference/api/database-limits/rate-limits,
# read 2026-12-07): upsert, 100 requests per second per namespace.
PINECONE_UPSERT_REQUESTS_PER_SECOND = 100
# Pinecone docs, "Limits" (docs.pinecone.io/docs/limits, rate-limit table, read
# 2026-12-07): upsert size, 50 MB per second per namespace.
PINECONE_UPSERT_BYTES_PER_SECOND = 50_000_000
# Pinecone docs, "Limits", operation limits: an upsert request holds at most 2 MB and
# 1,000 records (productsearch.documents has the same numbers).
PINECONE_MAX_UPSERT_REQUEST_BYTES = 2 * 1024 * 1024
PINECONE_MAX_RECORDS_PER_UPSERT = 1000
# ESTIMATE: one record in an upsert's JSON: 384 floats at about 13 characters, its sparse
# values (about 40 terms) and metadata. emu sizes requests by a bound of 25 characters
# a float (productsearch.index), so a request holds fewer records than the bytes allow.
UPSERT_RECORD_BYTES = 6_000
UPSERT_RECORD_BOUND_BYTES = 384 * 25 + 40 * 36 + 1024


def emu_changes_per_second(gpu: bool) -> int:
    """One emu task's estimated changes per second, on a GPU host or on Fargate CPU."""
    return EMU_CHANGES_PER_SECOND_PER_TASK["gpu" if gpu else "cpu"]


def emu_changes_per_task_target(configured: int, *, gpu: bool) -> int:
    """Changes waiting per emu task that target tracking holds: `configured`, or when it
    is 0 what one task clears in CLEAR_WITHIN_SECONDS by the estimate."""
    if configured < 0:
        raise ValueError("emuChangesPerTask must be positive, or 0 to derive it")
    return configured or emu_changes_per_second(gpu) * CLEAR_WITHIN_SECONDS


def sized_max_tasks(configured: int, *, peak_changes_per_second: int, per_task_changes_per_second: int,
                    min_tasks: int, floor_above_min: int = 0) -> int:
    """A service's most tasks: `configured`, or when it is 0 enough tasks for
    CATCH_UP_FACTOR x the peak rate, never fewer than `min_tasks + floor_above_min`.
    Raises ValueError when the result is below `min_tasks` or an input is out of range."""
    if min_tasks < 1:
        raise ValueError(f"the fewest tasks must be at least 1, got {min_tasks}")
    if configured < 0 or peak_changes_per_second <= 0 or per_task_changes_per_second <= 0:
        raise ValueError("task maximums and peakChangesPerSecond must be positive (a maximum may be 0: derive it)")
    if configured:
        if configured < min_tasks:
            raise ValueError(f"the most tasks ({configured}) must not be below the fewest ({min_tasks})")
        return configured
    needed = math.ceil(CATCH_UP_FACTOR * peak_changes_per_second / per_task_changes_per_second)
    return max(needed, min_tasks + floor_above_min)


def pinecone_namespace_changes_per_second(record_bytes: int = UPSERT_RECORD_BYTES,
                                          record_bound_bytes: int = UPSERT_RECORD_BOUND_BYTES) -> int:
    """Records per second one namespace accepts: the lower of Pinecone's upsert request
    rate times the records emu packs into a request, and its upsert bytes per second
    over a record's size."""
    per_request = min(PINECONE_MAX_RECORDS_PER_UPSERT,
                      (PINECONE_MAX_UPSERT_REQUEST_BYTES - 64 * 1024) // record_bound_bytes)
    by_requests = PINECONE_UPSERT_REQUESTS_PER_SECOND * per_request
    by_bytes = PINECONE_UPSERT_BYTES_PER_SECOND // record_bytes
    return min(by_requests, by_bytes)


def pinecone_ceiling_warning(max_tasks: int, per_task_changes_per_second: int) -> str | None:
    """A warning when `max_tasks` emu tasks could write faster than one Pinecone namespace
    accepts (more tasks then only meet 429s and back off), else None."""
    ceiling = pinecone_namespace_changes_per_second()
    wanted = max_tasks * per_task_changes_per_second
    if wanted <= ceiling:
        return None
    return (f"emuMaxTasks={max_tasks} tasks at ~{per_task_changes_per_second} changes/s each could write "
            f"~{wanted} records/s, more than one Pinecone namespace accepts (~{ceiling}/s by its upsert limits); "
            f"tasks beyond {max(1, ceiling // per_task_changes_per_second)} only meet rate limits unless Pinecone "
            "raises them or the index is split across namespaces (docs/infrastructure.md, Scaling)")
