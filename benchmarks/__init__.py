"""The evaluation and the benchmarks, one module per measurement, each runnable as
`python -m benchmarks.<module>`; `python -m benchmarks` (make bench) runs them together.
Shared parts: cli (options, printing, results JSON), pipeline (the local stack),
workload (rows, texts, queries), machine (what it ran on), metrics and beir (quality)."""
