"""The server's process-wide thread layout: one BLAS thread, whatever the core count."""

from __future__ import annotations

from threadpoolctl import threadpool_info, threadpool_limits

from cxguard.runtime.services import load_transcriber
from cxguard.runtime.settings import Settings


def _blas_threads() -> set[int]:
    return {int(i["num_threads"]) for i in threadpool_info() if i["user_api"] == "blas"}


def test_loading_the_transcriber_limits_blas_to_one_thread() -> None:
    assert _blas_threads(), "numpy links a BLAS (OpenBLAS in its wheels)"
    with threadpool_limits(limits=2, user_api="blas"):  # the previous limits come back after
        assert _blas_threads() == {2}
        load_transcriber(Settings())
        assert _blas_threads() == {1}
