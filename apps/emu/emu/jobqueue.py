"""The jobs queue, its dead-letter queue and the SNS topic: the only module of emu
that talks to SQS or SNS.

Visibility is what keeps a message from a second emu while this one works on it,
and what spaces out retries: a message handed back after a failure stays hidden for
a time that doubles with each receive, so the five receives SQS allows before the
redrive policy dead-letters it span minutes rather than seconds.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from productsearch import jobs
from productsearch.logs import brief
from productsearch.settings import QueueSettings

log = logging.getLogger(__name__)

# SQS limits (AWS docs: Amazon SQS quotas): ten entries per batch request, a
# visibility timeout of at most 12 hours, 256 KiB per message.
MAX_BATCH_ENTRIES = 10
MAX_VISIBILITY_SECONDS = 12 * 3600
MAX_BODY_BYTES = 256 * 1024
# A dead letter keeps this much of an unreadable body: enough to see what it was,
# while the record as a whole stays under MAX_BODY_BYTES once escaped.
DEAD_LETTER_RAW_CHARS = 32 * 1024


@dataclass(frozen=True)
class ReceivedMessage:
    message_id: str
    receipt: str
    body: str
    receive_count: int  # SQS's ApproximateReceiveCount: 1 on the first delivery
    received_at: float  # time.monotonic()


def retry_delay_seconds(receive_count: int, base_seconds: float, cap_seconds: float) -> int:
    """How long a failed message stays hidden before its next delivery: base * 2^(n-1)
    for its n-th receive, at most cap_seconds (and SQS's 12 h)."""
    delay = base_seconds * 2 ** max(0, min(receive_count, 30) - 1)
    return int(min(delay, cap_seconds, MAX_VISIBILITY_SECONDS))


class JobQueue:
    def __init__(self, sqs, sns, queues: QueueSettings, visibility_timeout_seconds: int):
        self.sqs, self.sns, self.queues = sqs, sns, queues
        self.url = queues.jobs_queue_url
        # On a FIFO queue a message's group stays locked until it is deleted.
        self.fifo = jobs.is_fifo(self.url)
        self.visibility_timeout_seconds = visibility_timeout_seconds

    def receive(self, max_messages: int, wait_seconds: int) -> list[ReceivedMessage]:
        """Long-polls for up to max_messages (1..10); raises the client's error."""
        response = self.sqs.receive_message(
            QueueUrl=self.url, MaxNumberOfMessages=max_messages, WaitTimeSeconds=wait_seconds,
            VisibilityTimeout=self.visibility_timeout_seconds, MessageSystemAttributeNames=["ApproximateReceiveCount"])
        now = time.monotonic()
        return [ReceivedMessage(m["MessageId"], m["ReceiptHandle"], m["Body"],
                                int(m.get("Attributes", {}).get("ApproximateReceiveCount", 1)), now)
                for m in response.get("Messages", [])]

    def delete(self, receipts: list[str]) -> int:
        """Deletes finished messages ten at a time; returns how many went. One that
        could not be deleted comes back and is redone, which versions make harmless."""
        deleted = 0
        for start in range(0, len(receipts), MAX_BATCH_ENTRIES):
            chunk = receipts[start : start + MAX_BATCH_ENTRIES]
            try:
                response = self.sqs.delete_message_batch(
                    QueueUrl=self.url, Entries=[{"Id": str(i), "ReceiptHandle": r} for i, r in enumerate(chunk)])
            except Exception as exc:
                log.warning("could not delete finished messages; they will come back and be redone",
                            extra={"messages": len(chunk), "error": brief(exc)})
                continue
            failed = response.get("Failed", [])
            deleted += len(chunk) - len(failed)
            if failed:
                log.warning("could not delete finished messages; they will come back and be redone",
                            extra={"messages": len(failed), "error": brief(failed[0])})
        return deleted

    def set_visibility(self, receipt: str, seconds: int) -> bool:
        """Hides the message for `seconds` more (0: visible at once); False if SQS refused."""
        try:
            self.sqs.change_message_visibility(QueueUrl=self.url, ReceiptHandle=receipt, VisibilityTimeout=seconds)
            return True
        except Exception as exc:
            log.warning("could not change message visibility", extra={"error": brief(exc)})
            return False

    def release(self, receipts: list[str]) -> int:
        """Makes messages visible again at once, ten per request (shutdown: none of them
        failed, so another emu may take them up immediately). Returns how many went."""
        released = 0
        for start in range(0, len(receipts), MAX_BATCH_ENTRIES):
            chunk = receipts[start : start + MAX_BATCH_ENTRIES]
            try:
                response = self.sqs.change_message_visibility_batch(
                    QueueUrl=self.url,
                    Entries=[{"Id": str(i), "ReceiptHandle": r, "VisibilityTimeout": 0} for i, r in enumerate(chunk)])
            except Exception as exc:
                log.warning("could not hand messages back; they return after their visibility timeout",
                            extra={"messages": len(chunk), "error": brief(exc)})
                continue
            released += len(chunk) - len(response.get("Failed", []))
        return released

    def dead_letter(self, reason: str, *, product_id: int | None, change: Any = None, raw_body: str | None = None,
                    source_message_id: str | None = None) -> None:
        """Sends the record to the DLQ, then tells a person through SNS.

        Raises the client's error when the DLQ send fails: the source message must then
        not be deleted. A failed notification is only logged (the DLQ holds the record,
        and its depth alarm fires anyway)."""
        record = {
            "reason": reason,
            "product_id": product_id,
            "change": change,
            "raw_body": None if raw_body is None else raw_body[:DEAD_LETTER_RAW_CHARS],
            "source_message_id": source_message_id,
            "dead_lettered_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        body = jobs.sqs_body(record)
        if len(body.encode()) > MAX_BODY_BYTES:  # a change with huge fields; the reason and id are what matter
            record["change"] = {"truncated": jobs.sqs_body(change)[:DEAD_LETTER_RAW_CHARS]}
            body = jobs.sqs_body(record)
        fifo = {}
        if jobs.is_fifo(self.queues.dead_letter_queue_url):
            # Dead letters need no order among themselves; one group, and the hash drops
            # a repeat of the same record (emu redoing a message it had not deleted),
            # so it leaves out the time, which a redo a second later would change.
            same = jobs.sqs_body({k: v for k, v in record.items() if k != "dead_lettered_at"})
            fifo = {"MessageGroupId": "dead-letters", "MessageDeduplicationId": jobs.deduplication_id(same)}
        self.sqs.send_message(QueueUrl=self.queues.dead_letter_queue_url, MessageBody=body, **fifo)
        log.warning("dead-lettered", extra={"product_id": product_id, "reason": brief(reason)})
        if not self.queues.dead_letter_topic_arn:
            return
        subject = f"emu dead-lettered product {product_id}" if product_id is not None else "emu dead-lettered an unreadable job"
        try:
            self.sns.publish(TopicArn=self.queues.dead_letter_topic_arn, Subject=subject[:100],
                             Message=jobs.sqs_body({"reason": reason[:2000], "product_id": product_id,
                                               "dlq": self.queues.dead_letter_queue_url,
                                               "action": "fix the row or the producer, then run `pelican redrive`"}))
        except Exception as exc:
            log.error("could not publish dead-letter notification", extra={"error": brief(exc)})
