"""Local development stack: real Postgres, moto for SQS/SNS, a Pinecone-compatible index server, and the apps, all on loopback."""
