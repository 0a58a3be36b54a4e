"""Dead-lettering a single change: to the DLQ with its reason, and a note to SNS
so a person hears about it. The rest of its message carries on."""

from __future__ import annotations

import json
import logging
import time

from productsearch.jobs import Change

log = logging.getLogger(__name__)


class DeadLetters:
    def __init__(self, sqs, sns, dlq_url: str, topic_arn: str | None):
        self.sqs, self.sns, self.dlq_url, self.topic_arn = sqs, sns, dlq_url, topic_arn

    def send(self, reason: str, *, change: Change | None = None, raw_body: str | None = None, message_id: str | None = None) -> None:
        body = {
            "reason": reason,
            "product_id": change.product_id if change else None,
            "change": change.to_json() if change else None,
            "raw_body": raw_body[:200_000] if raw_body is not None else None,
            "source_message_id": message_id,
            "dead_lettered_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        # The DLQ send must succeed before the source message may be deleted: let errors raise.
        self.sqs.send_message(QueueUrl=self.dlq_url, MessageBody=json.dumps(body, ensure_ascii=False)[:250_000])
        log.warning("dead-lettered", extra={"product_id": body["product_id"], "reason": reason})
        if self.topic_arn:
            subject = f"emu dead-lettered product {body['product_id']}" if change else "emu dead-lettered a malformed job"
            try:
                self.sns.publish(
                    TopicArn=self.topic_arn,
                    Subject=subject[:100],
                    Message=json.dumps({"reason": reason, "product_id": body["product_id"], "dlq": self.dlq_url,
                                        "action": "fix the row, then run `pelican redrive`"}),
                )
            except Exception as exc:  # the DLQ holds the record; a failed notification must not lose work
                log.error("could not publish dead-letter notification", extra={"error": str(exc)[:300]})
