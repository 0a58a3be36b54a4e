"""pelican: captured product changes -> SQS jobs."""
