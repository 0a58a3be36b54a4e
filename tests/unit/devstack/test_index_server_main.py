"""The index server's command line: BLAS threads for scoring."""

from __future__ import annotations

import numpy as np
import pytest
from threadpoolctl import threadpool_info

from devstack.index_server.__main__ import build_parser, limit_blas_threads, main


def blas_threads() -> dict[str, int]:
    """Threads per BLAS library loaded in this process (numpy's OpenBLAS at least)."""
    return {info["filepath"]: info["num_threads"] for info in threadpool_info() if info["user_api"] == "blas"}


def test_the_index_server_scores_with_one_blas_thread_by_default():
    np.ones((4, 4)) @ np.ones(4)  # BLAS is loaded and initialised
    assert build_parser().parse_args([]).blas_threads == 1
    before = blas_threads()
    assert before, "no BLAS library is loaded"
    limiter = limit_blas_threads(1)
    try:
        assert set(blas_threads().values()) == {1}
    finally:
        limiter.restore_original_limits()
    assert blas_threads() == before


def test_zero_leaves_blas_as_it_is_and_a_negative_count_is_refused(capsys):
    before = blas_threads()
    assert limit_blas_threads(0) is None
    assert blas_threads() == before
    with pytest.raises(ValueError, match="must be >= 0"):
        limit_blas_threads(-1)
    with pytest.raises(SystemExit) as stopped:
        main(["--blas-threads", "-1"])
    assert stopped.value.code == 2
    assert "--blas-threads must be 0 or more" in capsys.readouterr().err
