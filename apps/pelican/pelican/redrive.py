"""Replays the dead-letter queue after the cause is fixed: every product named in a
dead letter (emu's records with a reason, or raw jobs that SQS moved there after
too many receives) is re-captured, so its *current* state goes through the
pipeline again. A DLQ message is deleted only after its re-capture is committed;
one that names no product is left in place and reported."""

from __future__ import annotations

import json
import logging

from pelican.recapture import recapture
from productsearch import aws, db, jobs
from productsearch.settings import DatabaseSettings, QueueSettings

log = logging.getLogger(__name__)


def product_ids_in(body: str) -> list[int]:
    try:
        data = json.loads(body)
    except json.JSONDecodeError:
        return []
    if isinstance(data, dict) and "reason" in data:
        if data.get("product_id") is not None:
            return [int(data["product_id"])]
        raw = data.get("raw_body")
        return product_ids_in(raw) if isinstance(raw, str) else []
    try:
        return [c.product_id for c in jobs.decode(body)]
    except jobs.MalformedJob:
        return []


def redrive(database: DatabaseSettings, queues: QueueSettings) -> int:
    sqs = aws.sqs_client(queues)
    recaptured = 0
    unreadable = 0
    with db.connect(database, application_name="redrive") as conn:
        while True:
            messages = sqs.receive_message(QueueUrl=queues.dead_letter_queue_url, MaxNumberOfMessages=10,
                                           WaitTimeSeconds=1, VisibilityTimeout=60).get("Messages", [])
            if not messages:
                break
            done = []
            ids: list[int] = []
            for message in messages:
                found = product_ids_in(message["Body"])
                if found:
                    ids.extend(found)
                    done.append(message)
                else:
                    unreadable += 1
                    log.warning("dead letter names no product; left in the DLQ", extra={"message_id": message["MessageId"]})
            with conn.transaction():
                recaptured += recapture(conn, ids)
            for message in done:
                sqs.delete_message(QueueUrl=queues.dead_letter_queue_url, ReceiptHandle=message["ReceiptHandle"])
            if unreadable and not done:
                break
    log.info("redrive finished", extra={"recaptured": recaptured, "left_unreadable": unreadable})
    return recaptured
