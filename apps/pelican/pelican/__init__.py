"""pelican ships the changes the capture triggers record in the outbox (and backfills
of the whole table) to the SQS jobs queue, as messages emu reads."""
