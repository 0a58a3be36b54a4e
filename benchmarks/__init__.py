"""Helpers shared by scripts/evaluate_beir.py and scripts/benchmark.py: retrieval
metrics, BEIR loading, the machine's description and driving the local pipeline."""
