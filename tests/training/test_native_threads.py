"""The native thread limit of a prediction: set for the calling thread only, then undone."""

from __future__ import annotations

import threading

import pytest
from threadpoolctl import threadpool_info

from loopline.training import native_threads


def _openmp_threads() -> set[int]:
    """What each loaded OpenMP runtime would give the calling thread's next team."""
    return {i["num_threads"] for i in threadpool_info() if i["user_api"] == "openmp"}


@pytest.fixture(autouse=True)
def _openmp_loaded() -> None:
    """scikit-learn's gradient boosting brings its OpenMP runtime, as a served model does."""
    import sklearn.ensemble  # noqa: F401

    native_threads.refresh()


def test_the_limit_holds_inside_for_this_thread_and_is_undone_after() -> None:
    before = _openmp_threads()
    assert before, "no OpenMP runtime loaded"
    with native_threads.limited(1):
        assert _openmp_threads() == {1}
        assert native_threads.current() == 1
    assert _openmp_threads() == before
    assert native_threads.current() is None


def test_other_threads_keep_their_own_count_while_one_is_limited() -> None:
    outside = _openmp_threads()
    limited_seen = threading.Event()
    release = threading.Event()
    seen: dict[str, object] = {}

    def limited_request() -> None:
        with native_threads.limited(1):
            seen["inside"] = _openmp_threads(), native_threads.current()
            limited_seen.set()
            release.wait(30)

    worker = threading.Thread(target=limited_request)
    worker.start()
    try:
        assert limited_seen.wait(30)
        # this thread, meanwhile: neither the OpenMP count nor the context changed
        assert _openmp_threads() == outside
        assert native_threads.current() is None
    finally:
        release.set()
        worker.join(30)
    assert seen["inside"] == ({1}, 1)


@pytest.mark.parametrize("threads", [0, None])
def test_zero_or_none_leaves_the_libraries_alone(threads: int | None) -> None:
    before = _openmp_threads()
    with native_threads.limited(threads):
        assert _openmp_threads() == before
        assert native_threads.current() is None


def test_the_limit_is_undone_when_the_prediction_raises() -> None:
    before = _openmp_threads()
    with pytest.raises(ZeroDivisionError), native_threads.limited(1):
        _ = 1 / 0
    assert _openmp_threads() == before
    assert native_threads.current() is None
