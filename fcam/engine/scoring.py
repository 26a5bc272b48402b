"""Where the localization metrics are computed: in this process, or in a pool of worker
processes created once per evaluation run and fed batch after batch.

The evaluators (:mod:`fcam.metrics`) are plain accumulators; the per-image work (contour
searches, histograms, reading saved maps and masks) is done by pure functions that this pool
runs, and only their small per-image results come back to be added.

A worker is a fresh interpreter running this module (``python -m fcam.engine.scoring``), never
a fork of the calling process, which may hold CUDA/NCCL state, DataLoader threads or locks held
by other threads; nor does it re-run the caller's main module, as multiprocessing's spawn and
forkserver do (a training script that imports torch, a script without a main guard). It
imports only what the jobs it receives need (numpy, OpenCV, :mod:`fcam.metrics`, not torch),
runs OpenCV single-threaded (the pool is sized to the CPUs) and talks to the pool over two
pipes: pickled ``(function, arguments)`` in, ``(ok, result or exception)`` out.
"""

from __future__ import annotations

import os
import platform
import signal
import subprocess
import sys
from collections import deque
from multiprocessing.connection import Connection, wait
from typing import Any, Callable

from fcam.errors import FcamError

AUTO = -1  # eval.num_workers: one worker per CPU of this process divided among the local ranks


def available_cpus() -> int:
    """The CPUs this process may run on: its affinity (a container or ``taskset`` may allow fewer
    than the machine has), or the machine's count where the OS has no affinity API; at least 1.
    Here, not with the torch-importing engine modules, so that scoring workers stay torch-free."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # no affinity API (macOS, Windows)
        return os.cpu_count() or 1


def cpu_model(cpuinfo_path: str = "/proc/cpuinfo") -> str:
    """The CPU's model name, for the machine lines of reports and benchmarks: the first of Linux's
    ``/proc/cpuinfo``, else what :mod:`platform` knows (possibly only the architecture)."""
    try:
        with open(cpuinfo_path, encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def default_num_workers(local_world_size: int = 1) -> int:
    """The CPUs this process may run on (its affinity, not the machine's count) shared among the
    ``local_world_size`` ranks of this machine; at least 1."""
    return max(1, available_cpus() // max(1, local_world_size))


def resolve_num_workers(num_workers: int, local_world_size: int = 1) -> int:
    """``num_workers`` as given, or :func:`default_num_workers` for :data:`AUTO`."""
    if num_workers == AUTO:
        return default_num_workers(local_world_size)
    if num_workers < 0:
        raise FcamError(f"eval.num_workers must be -1 (automatic), 0 or 1 (no worker process) or a count; "
                        f"got {num_workers}")
    return num_workers


class ScoringPool:
    """Runs scoring jobs and hands each result to a callback in the calling thread.

    With ``num_workers`` 0 or 1 a job runs at once in this process. Otherwise ``num_workers``
    worker processes start with the pool (once per evaluation run, not per batch) and each takes
    one job at a time; at most ``max_pending`` jobs are queued or running, which bounds the
    memory of the batches in flight while the caller computes the next ones. Results are
    delivered in the order jobs finish. Use it as a context manager: leaving it waits for every
    result or, on an error, stops the workers at once.
    """

    def __init__(self, num_workers: int, max_pending: int | None = None) -> None:
        self.num_workers = num_workers
        self.max_pending = max_pending or 2 * max(num_workers, 1)
        self._queue: deque[tuple[Callable[[Any], None], Callable[..., Any], tuple]] = deque()
        self._running: dict[_Worker, Callable[[Any], None]] = {}
        self._workers = [_Worker() for _ in range(num_workers)] if num_workers > 1 else []

    def submit(self, on_result: Callable[[Any], None], fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` (a module-level function, picklable arguments) and call ``on_result`` with its value.

        An exception raised by ``fn`` is raised again here or by :meth:`drain`.
        """
        if not self._workers:
            on_result(fn(*args))
            return
        self._queue.append((on_result, fn, args))
        self._dispatch()
        while len(self._queue) + len(self._running) > self.max_pending:
            self._collect()

    def drain(self) -> None:
        """Wait for every submitted job and deliver its result."""
        while self._queue or self._running:
            self._collect()

    def _dispatch(self) -> None:
        for worker in self._workers:
            if not self._queue:
                return
            if worker not in self._running:
                on_result, fn, args = self._queue.popleft()
                worker.send((fn, args))
                self._running[worker] = on_result

    def _collect(self) -> None:
        by_connection = {worker.results: worker for worker in self._running}
        for connection in wait(list(by_connection)):
            worker = by_connection[connection]
            on_result = self._running.pop(worker)
            ok, value = worker.receive()
            self._dispatch()
            if not ok:
                raise value
            on_result(value)

    def close(self, wait_for_results: bool = True) -> None:
        """Deliver what is pending (``wait_for_results``) and stop the workers."""
        try:
            if wait_for_results:
                self.drain()
        finally:
            self._queue.clear()
            self._running.clear()
            for worker in self._workers:
                worker.stop(graceful=wait_for_results)
            self._workers = []

    def __enter__(self) -> ScoringPool:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(wait_for_results=exc_type is None)


class _Worker:
    """One worker process and its two pipes."""

    def __init__(self) -> None:
        job_read, job_write = os.pipe()
        result_read, result_write = os.pipe()
        # The worker imports the fcam that this process imports.
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        self.process = subprocess.Popen([sys.executable, "-m", "fcam.engine.scoring", str(job_read), str(result_write)],
                                        pass_fds=(job_read, result_write), env=env, stdin=subprocess.DEVNULL)
        os.close(job_read)
        os.close(result_write)
        self.jobs = Connection(job_write, readable=False)
        self.results = Connection(result_read, writable=False)

    def send(self, job: tuple) -> None:
        try:
            self.jobs.send(job)
        except OSError:
            raise RuntimeError(f"a scoring worker died (exit status {self.process.poll()})") from None

    def receive(self) -> tuple[bool, Any]:
        try:
            return self.results.recv()
        except EOFError:
            raise RuntimeError(f"a scoring worker died (exit status {self.process.wait()})") from None

    def stop(self, graceful: bool) -> None:
        if graceful:
            try:
                self.jobs.send(None)
            except OSError:
                pass
        self.jobs.close()
        self.results.close()
        try:
            self.process.wait(timeout=10 if graceful else 0.1)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _serve(job_fd: int, result_fd: int) -> None:
    """A worker's loop: run each job received, send back its result or its exception, until told to stop."""
    import cv2

    cv2.setNumThreads(1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the pool's owner handles Ctrl-C and stops us
    os.dup2(2, 1)  # a stray print goes to stderr, never into a pipe
    jobs = Connection(job_fd, writable=False)
    results = Connection(result_fd, readable=False)
    while True:
        try:
            job = jobs.recv()
        except EOFError:  # the pool's owner is gone
            return
        except Exception as exc:  # e.g. the job's function cannot be imported here
            results.send((False, exc))
            continue
        if job is None:
            return
        fn, args = job
        try:
            reply = (True, fn(*args))
        except Exception as exc:  # handed to the pool's owner, which raises it
            reply = (False, exc)
        try:
            results.send(reply)
        except Exception as exc:  # an unpicklable result or exception
            results.send((False, RuntimeError(f"a scoring job's outcome could not be sent back ({exc}): "
                                              f"{reply[1]!r}")))


if __name__ == "__main__":
    _serve(int(sys.argv[1]), int(sys.argv[2]))
