"""The studio's job queue: one worker thread per model runs that model's jobs one at a time, in order.

Two browser tabs that ask the same model for work queue behind each other and cannot interleave; jobs for
different models run side by side. A job reports progress (steps done / total), a preview image, and ends with
a result or a one-line error. Cancel sets a flag that the job's step callback checks, so a running job stops at
its next sampler step.
"""

from __future__ import annotations

import itertools
import queue
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from noisecraft.errors import NoisecraftError

KEEP_FINISHED = 64  # finished jobs kept for their results


class Cancelled(Exception):
    """Raised inside a job's step callback when the user pressed cancel."""


@dataclass
class Job:
    """One unit of work: `fn(job)` returns the result dict; it calls ``job.step(done, total, preview)``."""

    id: int
    key: str
    fn: Callable[[Job], dict[str, Any]]
    status: str = "queued"  # queued, running, done, error, cancelled
    done: int = 0
    total: int = 0
    preview: str | None = None
    result: dict[str, Any] | None = None
    error: str | None = None
    cancel: threading.Event = field(default_factory=threading.Event)
    started: float | None = None
    finished: float | None = None

    def step(self, done: int, total: int, preview: str | None = None) -> None:
        """Record progress; raises Cancelled once cancel was asked for (the sampler stops here)."""
        self.done, self.total = done, total
        if preview is not None:
            self.preview = preview
        if self.cancel.is_set():
            raise Cancelled

    def view(self, position: int | None = None) -> dict[str, Any]:
        return {
            "id": self.id,
            "status": self.status,
            "done": self.done,
            "total": self.total,
            "preview": self.preview,
            "result": self.result,
            "error": self.error,
            "queue_position": position,
            "seconds": None if self.started is None else round((self.finished or time.time()) - self.started, 3),
        }


class JobQueue:
    """Jobs keyed by model; each key has its own FIFO and worker thread (created on first use)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._jobs: dict[int, Job] = {}
        self._queues: dict[str, queue.Queue[Job]] = {}
        self._waiting: dict[str, list[int]] = {}

    def submit(self, key: str, fn: Callable[[Job], dict[str, Any]]) -> Job:
        with self._lock:
            job = Job(next(self._ids), key, fn)
            self._jobs[job.id] = job
            self._waiting.setdefault(key, []).append(job.id)
            q = self._queues.get(key)
            if q is None:
                q = self._queues[key] = queue.Queue()
                threading.Thread(target=self._work, args=(key, q), daemon=True, name=f"studio-{key}").start()
            self._forget_old()
        q.put(job)
        return job

    def get(self, job_id: int) -> tuple[Job, int | None] | None:
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None:
                return None
            waiting = self._waiting.get(job.key, [])
            return job, (waiting.index(job_id) if job_id in waiting else None)

    def cancel(self, job_id: int) -> bool:
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None or job.status not in ("queued", "running"):
            return False
        job.cancel.set()
        return True

    def _forget_old(self) -> None:
        ended = [j for j in self._jobs.values() if j.status in ("done", "error", "cancelled")]
        for j in sorted(ended, key=lambda j: j.id)[: max(0, len(ended) - KEEP_FINISHED)]:
            del self._jobs[j.id]

    def _work(self, key: str, q: queue.Queue[Job]) -> None:
        while True:
            job = q.get()
            with self._lock:
                self._waiting[key].remove(job.id)
            job.started = time.time()
            if job.cancel.is_set():
                job.status = "cancelled"
            else:
                job.status = "running"
                try:
                    job.result = job.fn(job)
                    job.status = "done"
                except Cancelled:
                    job.status = "cancelled"
                except NoisecraftError as e:
                    job.error, job.status = str(e), "error"
                except Exception as e:  # the page gets one line; the terminal gets the traceback
                    traceback.print_exc()
                    job.error, job.status = f"internal error ({type(e).__name__}: {e})", "error"
            job.finished = time.time()
