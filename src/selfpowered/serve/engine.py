"""The server's decoding thread: `Engine` runs one `DecodeBatch` per served model on a background
thread and takes requests from any thread (`submit`), streaming their tokens back as events."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
import queue
import threading
import time

from selfpowered.errors import SelfPoweredError
from selfpowered.model.engine import DecodeBatch, Request
from selfpowered.model.served import ServedModel

logger = logging.getLogger(__name__)


TRIM_BUSY_EVERY_S = 30.0  # while decoding without a pause, hand freed memory back this often


@functools.cache
def _libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


M_ARENA_MAX = -8  # glibc's mallopt parameter
MALLOC_ARENAS = 2  # heaps the server's threads share (glibc's default: 8 per core, each keeping its freed pages)


def limit_malloc_arenas(arenas: int = MALLOC_ARENAS) -> bool:
    """Make the process's threads share a few heaps instead of one each: memory a request thread
    freed is then reused by the others and trimmed with them, not held in an arena of its own.
    False on a C library without glibc's mallopt (musl, macOS)."""
    mallopt = getattr(_libc(), "mallopt", None)
    return mallopt is not None and bool(mallopt(M_ARENA_MAX, arenas))


def release_freed_memory() -> bool:
    """Hand the heap pages that freed tensors left behind back to the OS. glibc keeps them for reuse,
    so a server's RSS would stay at the high-water mark of its widest batch and longest prompt for
    good (bench/serve_load.py); False on a C library without glibc's malloc_trim."""
    trim = getattr(_libc(), "malloc_trim", None)
    return trim is not None and trim(0) >= 0


class QueueFull(SelfPoweredError):
    """More requests are waiting than the server accepts; the client should retry later."""


class Engine:
    """Decodes on one background thread; `submit` from any thread. Requests for several models
    are served in turn, each model's rows batched together."""

    def __init__(self, models: dict[str, ServedModel], max_batch: int = 16, max_queue: int = 256) -> None:
        self.models, self.max_batch, self.max_queue = models, max_batch, max_queue
        self.inbox: queue.Queue[Request] = queue.Queue()
        self.batches = {name: DecodeBatch(served) for name, served in models.items()}
        self.waiting: dict[str, list[Request]] = {name: [] for name in models}
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="selfpowered-engine", daemon=True)
        self.steps = 0
        self.last_progress = time.monotonic()  # the last admit or step that finished (liveness)
        self.trims = 0  # times freed memory was handed back (when the engine went idle, or every 30 s busy)
        self._last_trim = time.monotonic()

    def start(self) -> Engine:
        limit_malloc_arenas()  # before the server's threads make heaps of their own
        self.thread.start()
        return self

    def stop(self, timeout: float = 3.0) -> None:
        """Stop decoding: every request still waiting or decoding ends as cancelled (its client gets
        what it has), and the thread is joined for at most `timeout` seconds."""
        self._stop.set()
        self.thread.join(timeout=timeout)

    def stuck(self, after_seconds: float) -> bool:
        """Work is waiting or decoding, and nothing finished for `after_seconds`: not live."""
        busy = self.active or self.queue_depth
        return bool(busy) and time.monotonic() - self.last_progress > after_seconds

    @property
    def queue_depth(self) -> int:
        return self.inbox.qsize() + sum(len(w) for w in self.waiting.values())

    @property
    def active(self) -> int:
        return sum(len(batch) for batch in self.batches.values())

    def submit(self, request: Request) -> None:
        if request.model not in self.models:
            raise SelfPoweredError(f"model {request.model!r} is not served")
        if self.queue_depth >= self.max_queue:
            raise QueueFull(f"{self.queue_depth} requests are waiting (the limit is {self.max_queue})")
        self.inbox.put(request)

    def _loop(self) -> None:
        worked = False  # decoded since memory was last handed back
        while not self._stop.is_set():
            idle = not self.active and not any(self.waiting.values())
            if worked and (idle or time.monotonic() - self._last_trim > TRIM_BUSY_EVERY_S):
                self.trims += release_freed_memory()
                self._last_trim, worked = time.monotonic(), False
            try:
                first = self.inbox.get(timeout=0.05) if idle else self.inbox.get_nowait()
                self.waiting[first.model].append(first)
                while True:
                    request = self.inbox.get_nowait()
                    self.waiting[request.model].append(request)
            except queue.Empty:
                pass
            worked = worked or bool(self.active or any(self.waiting.values()))
            for name, batch in self.batches.items():
                try:
                    self._turn(name, batch)
                except Exception:  # a bug must not kill the server: fail the rows, go on
                    logger.exception("engine step failed for %s", name)
                    for request in batch.rows + self.waiting[name]:
                        request.error, request.finish_reason = "internal error (logged on the server)", "error"
                        request.emit("done", request)
                    self.batches[name], self.waiting[name] = DecodeBatch(batch.served), []
        self._drain()

    def _drain(self) -> None:
        """On stop: end every request left, so no client waits on a thread that is gone."""
        left = [
            *(r for batch in self.batches.values() for r in batch.rows),
            *(r for w in self.waiting.values() for r in w),
        ]
        while True:
            try:
                left.append(self.inbox.get_nowait())
            except queue.Empty:
                break
        for request in left:
            if request.finish_reason is None:
                request.finish_reason, request.error = "cancelled", "the server is shutting down"
                request.emit("done", request)

    def _turn(self, name: str, batch: DecodeBatch) -> None:
        waiting = [r for r in self.waiting[name] if not r.cancelled]
        for request in self.waiting[name]:
            if request.cancelled:
                request.finish_reason = "cancelled"
                request.emit("done", request)
        room = self.max_batch - len(batch)
        if waiting and room > 0:
            with batch.served.lock:
                batch.admit(waiting[:room])
            waiting = waiting[room:]
            self.last_progress = time.monotonic()
        self.waiting[name] = waiting
        if len(batch):
            started = time.perf_counter()
            with batch.served.lock:
                batch.step()
            self.steps += 1
            self.last_progress = time.monotonic()
            logger.debug("step %d: %d rows in %.3f s", self.steps, len(batch), time.perf_counter() - started)
