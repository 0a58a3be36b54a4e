"""emu: SQS jobs -> embeddings -> Pinecone."""
