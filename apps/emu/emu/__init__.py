"""emu takes jobs off the SQS jobs queue, embeds each product's text and upserts it into
the Pinecone index (or, for a deletion, deletes it there and leaves a tombstone); a job that never succeeds
goes to the dead-letter queue with an SNS notification."""
