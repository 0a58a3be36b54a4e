"""benchmarks.cuda's stored figures: what `make bench` prints on a machine without a GPU."""

from __future__ import annotations

import json

import pytest

from benchmarks import cli, cuda


def _bench(rows_per_s: dict[int, float]) -> dict:
    # The shape benchmarks.all writes (results/bench.json), cut to what the reader takes.
    return {"measured_at": "2026-11-30T11:15:55Z", "machine": {"gpu": "NVIDIA H200"},
            "raw_embedding": {"texts_per_s": 3447.5},
            "backfill": [{"rows": n, "rows_per_s": r, "seconds": round(n / r, 2), "ratio_to_raw": 0.2,
                          "raw_texts_per_s_before_after": [8657.1, 10013.5], "cpu_s_during_backfill": {"emu": 1.0},
                          "series": [[0.0, 0]]} for n, r in rows_per_s.items()]}


def test_the_stored_gpu_backfill_is_read_without_its_series(tmp_path):
    path = tmp_path / "bench-gpu.json"
    path.write_text(json.dumps(_bench({10000: 1359.6, 50000: 1866.7})))
    got = cuda.stored_gpu_backfill(path)
    assert got["gpu"] == "NVIDIA H200"
    assert [(r["rows"], r["rows_per_s"]) for r in got["runs"]] == [(10000, 1359.6), (50000, 1866.7)]
    # each ratio goes with the raw runs it was taken against, not the first raw figure
    assert all(r["raw_texts_per_s_before_after"] == [8657.1, 10013.5] for r in got["runs"])
    assert all("series" not in r for r in got["runs"])
    assert cuda.stored_gpu_backfill(tmp_path / "absent.json") is None


def test_without_a_gpu_the_figures_carry_the_stored_ones(tmp_path, monkeypatch):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("with a GPU, figures() measures in place")
    monkeypatch.setattr(cli, "RESULTS", tmp_path)
    assert cuda.figures(log=lambda *_: None) == {"skipped": "no GPU here and no results/cuda.json"}
    (tmp_path / "cuda.json").write_text(json.dumps({"gpu": "NVIDIA H200", "corpora": {"catalog": {"texts": 1}}}))
    figures = cuda.figures(log=lambda *_: None)
    assert figures["corpora"] == {"catalog": {"texts": 1}} and "backfill" not in figures
    (tmp_path / cuda.STORED_GPU_BENCH).write_text(json.dumps(_bench({10000: 1359.6})))
    assert cuda.figures(log=lambda *_: None)["backfill"]["runs"][0]["rows_per_s"] == 1359.6


def test_the_committed_gpu_backfill_reads():
    got = cuda.stored_gpu_backfill()
    assert got is not None and [r["rows"] for r in got["runs"]] == [10000, 50000]
    for run in got["runs"]:
        assert run["ratio_to_raw"] == pytest.approx(run["rows_per_s"] / (sum(run["raw_texts_per_s_before_after"]) / 2),
                                                    abs=0.002)
