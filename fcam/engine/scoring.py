"""Where the localization metrics are computed: in this process, or in a pool of worker
processes created once per evaluation run and fed batch after batch.

The evaluators (:mod:`fcam.metrics`) are plain accumulators; the per-image work (contour
searches, histograms, reading saved maps and masks) is done by pure functions that this pool
runs, and only their small per-image results come back to be added.

Workers are never forked from the calling process, which may hold CUDA/NCCL state, DataLoader
threads or locks held by other threads: they are forked from multiprocessing's *forkserver*, a
fresh single-threaded interpreter, and import only what the scoring functions need (numpy,
OpenCV, :mod:`fcam.metrics`; not torch). Where forkserver does not exist (Windows) they are
spawned. Each worker runs OpenCV single-threaded, as the pool is sized to the CPUs.
"""

from __future__ import annotations

import multiprocessing
import os
from collections import deque
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any, Callable

from fcam.errors import FcamError

AUTO = -1  # eval.num_workers: one worker per CPU of this process divided among the local ranks


def default_num_workers(local_world_size: int = 1) -> int:
    """The CPUs this process may run on (its affinity, not the machine's count) shared among the
    ``local_world_size`` ranks of this machine; at least 1."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # no affinity API (macOS, Windows)
        cpus = os.cpu_count() or 1
    return max(1, cpus // max(1, local_world_size))


def resolve_num_workers(num_workers: int, local_world_size: int = 1) -> int:
    """``num_workers`` as given, or :func:`default_num_workers` for :data:`AUTO`."""
    if num_workers == AUTO:
        return default_num_workers(local_world_size)
    if num_workers < 0:
        raise FcamError(f"eval.num_workers must be -1 (automatic), 0 or 1 (no worker process) or a count; "
                        f"got {num_workers}")
    return num_workers


def _start_worker() -> None:
    import cv2

    cv2.setNumThreads(1)


class ScoringPool:
    """Runs scoring functions and hands each result to a callback in the calling thread.

    With ``num_workers`` 0 or 1 a function runs at once in this process. Otherwise the worker
    processes start with the pool (once per evaluation run, not per batch) and at most
    ``max_pending`` submitted jobs wait for collection, which bounds the memory of the batches in
    flight while the caller computes the next ones. Use it as a context manager; leaving it waits
    for every result, or, on an error, drops the jobs not started.
    """

    def __init__(self, num_workers: int, max_pending: int | None = None) -> None:
        self.num_workers = num_workers
        self.max_pending = max_pending or 2 * max(num_workers, 1)
        self._pending: deque[tuple[Future, Callable[[Any], None]]] = deque()
        self._executor: ProcessPoolExecutor | None = None
        if num_workers > 1:
            methods = multiprocessing.get_all_start_methods()
            context = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
            self._executor = ProcessPoolExecutor(num_workers, mp_context=context, initializer=_start_worker)

    def submit(self, on_result: Callable[[Any], None], fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` (a picklable module-level function) and later call ``on_result`` with its value.

        Results are delivered in submission order; an exception raised by ``fn`` is raised here or
        by :meth:`drain`.
        """
        if self._executor is None:
            on_result(fn(*args))
            return
        self._pending.append((self._executor.submit(fn, *args), on_result))
        while len(self._pending) > self.max_pending:
            self._collect_oldest()

    def drain(self) -> None:
        """Wait for every submitted job and deliver its result."""
        while self._pending:
            self._collect_oldest()

    def _collect_oldest(self) -> None:
        future, on_result = self._pending.popleft()
        on_result(future.result())

    def close(self, wait_for_results: bool = True) -> None:
        if wait_for_results:
            self.drain()
        self._pending.clear()
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=not wait_for_results)
            self._executor = None

    def __enter__(self) -> ScoringPool:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(wait_for_results=exc_type is None)
