"""How much work the jobs queue already holds, read rarely, and how many changes a
message carries: pelican's backpressure and its ChangesWaiting metric.

Changes wait in the change log for as long as it takes; on the queue they would age
out after its retention. So pelican ships only while the queue holds fewer than
max_queued_messages messages (pelican.config.PelicanSettings).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

from productsearch.aws import queue_depth


class QueueGauge:
    """The jobs queue's depth (messages waiting plus in flight) as pelican last read it,
    plus the messages pelican has sent since.

    Each reading costs an SQS request (GetQueueAttributes), so `room()` reads again
    only when its answer could change what pelican does: on the first call; once the
    messages sent since the last reading have used up the room it showed; and while
    pelican ships or is paused, once the reading is interval_s old (other replicas
    fill the queue, emu drains it). At most one read per interval_s then, none while
    pelican is idle under the limit. `read()` reads at once (the metric's put)."""

    def __init__(self, sqs, queue_url: str, limit: int, interval_s: float,
                 clock: Callable[[], float] = time.monotonic):
        self.sqs, self.queue_url, self.limit, self.interval_s, self.clock = sqs, queue_url, limit, interval_s, clock
        self.depth: int | None = None
        self.read_at = float("-inf")
        self.sent_since = 0

    def read(self) -> int:
        """Reads the queue's depth now (waiting plus in flight messages) and returns it.
        Raises botocore's BotoCoreError or ClientError when SQS does not answer."""
        depth = queue_depth(self.sqs, self.queue_url)
        self.depth = depth["visible"] + depth["in_flight"]
        self.read_at = self.clock()
        self.sent_since = 0
        return self.depth

    def sent(self, messages: int) -> None:
        """Counts messages pelican has just sent."""
        self.sent_since += messages

    def room(self) -> int:
        """How many more messages the queue may take before the limit, reading the depth
        again when needed (see the class); 0 or less: do not ship. Raises what read()
        raises."""
        stale = self.clock() - self.read_at >= self.interval_s
        depth = self.depth
        if depth is None or (stale and (self.sent_since > 0 or depth >= self.limit)):
            depth = self.read()
        return self.limit - (depth + self.sent_since)

    def wait_s(self) -> float:
        """Seconds until room() may read again (0 when it may now)."""
        return max(0.0, self.read_at + self.interval_s - self.clock())


class RecentPacking:
    """The mean changes (change-log rows) per message over pelican's last `window`
    batches; `default` until one has been shipped."""

    def __init__(self, default: float, window: int = 100):
        self.default = default
        self._batches: deque[tuple[int, int]] = deque(maxlen=window)

    def shipped(self, changes: int, messages: int) -> None:
        if messages:
            self._batches.append((changes, messages))

    def changes_per_message(self) -> float:
        messages = sum(m for _, m in self._batches)
        return sum(c for c, _ in self._batches) / messages if messages else self.default
