"""emu takes jobs off the SQS jobs queue, embeds each product's text and upserts it into
(or, for a tombstone, deletes it from) the Pinecone index; a job that never succeeds
goes to the dead-letter queue with an SNS notification."""
