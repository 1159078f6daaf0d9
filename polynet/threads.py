"""How many CPU threads polynet's operations use, decided in one place.

torch's intra-op pool (OpenMP) and numba's ``prange`` split each operation across threads that
meet at barriers. When another process keeps one of the cores busy, a thread on that core gets
a time slice only now and then, and every barrier waits for it: a 2-thread expansion of the
Boston network took 270 ms instead of 17 ms on a 2-core machine with one core busy, and
training slowed 60-240x. One thread per free core avoids that, and small operations gain
nothing from a second thread anyway.

:func:`choose_threads` is the policy and :func:`limit_threads` applies it around one operation
(torch and, when loaded, numba), restoring the previous counts afterwards. An explicit count
always wins; the automatic count never exceeds torch's current setting, so
``torch.set_num_threads(1)`` before a call keeps one thread.

Examples
--------
>>> with limit_threads(1) as n:
...     n
1
>>> choose_threads(work=1) == 1  # a tiny operation runs on one thread
True
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import wraps
from typing import Any, TypeVar

import torch

__all__ = [
    "SMALL_WORK",
    "available_cores",
    "busy_cores",
    "choose_threads",
    "limit_threads",
    "thread_policy",
]

#: Work (about one multiply-add each) below which an operation runs on one thread: starting and
#: joining a pool costs more than it saves at this size.
SMALL_WORK = 2_000_000

F = TypeVar("F", bound=Callable[..., Any])


def available_cores() -> int:
    """The cores this process may run on: its CPU affinity, capped by a cgroup CPU quota."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        cores = os.cpu_count() or 1
    try:  # cgroup v2: "max 100000" or "<quota> <period>"
        quota, period = open("/sys/fs/cgroup/cpu.max").read().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, int(int(quota) // int(period))))
    except (OSError, ValueError):
        pass
    return max(1, cores)


def busy_cores() -> int:
    """Threads of other processes running now (Linux's instantaneous run queue), else 0.

    The fourth field of ``/proc/loadavg`` counts runnable threads, this one included; the
    one-minute load average would lag a busy loop that started a second ago.
    """
    try:
        running = int(open("/proc/loadavg").read().split()[3].split("/")[0])
    except (OSError, ValueError, IndexError):
        return 0
    return max(0, running - 1)


def choose_threads(threads: int | None = None, *, work: float | None = None) -> int:
    """The thread count for one operation.

    Parameters
    ----------
    threads : int or None, default=None
        An explicit count, returned unchanged. None lets polynet choose: one thread per core
        that no other process is using (at least one), never more than torch's current count,
        and one thread when ``work`` is below :data:`SMALL_WORK`.
    work : float or None, default=None
        About how many multiply-adds one parallel step of the operation does; None when unknown.

    Returns
    -------
    int
    """
    if threads is not None:
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise ValueError(f"threads must be an integer >= 1 or None, got {threads!r}.")
        return threads
    if work is not None and work < SMALL_WORK:
        return 1
    cores = available_cores()
    free = cores - busy_cores()
    return max(1, min(cores, free, torch.get_num_threads()))


@contextmanager
def limit_threads(threads: int | None = None, *, work: float | None = None) -> Iterator[int]:
    """Run the body with :func:`choose_threads`' count in torch (and numba, when imported).

    Yields the count; the previous counts are restored on exit, also after an error. Inside
    the body, operations decorated with :func:`thread_policy` keep this choice.
    """
    explicit_outer = getattr(_nesting, "explicit", False)
    # An enclosing explicit count (--threads, threads=N) wins over this call's automatic one.
    n = torch.get_num_threads() if threads is None and explicit_outer else None
    n = n or choose_threads(threads, work=work)
    torch_before = torch.get_num_threads()
    numba = sys.modules.get("numba")
    numba_before = None
    if n != torch_before:
        torch.set_num_threads(n)
    if numba is not None:
        try:
            numba_before = numba.get_num_threads()
            numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
        except (AttributeError, ValueError, RuntimeError):
            numba_before = None
    outer = getattr(_nesting, "active", False)
    _nesting.active, _nesting.explicit = True, explicit_outer or threads is not None
    try:
        yield n
    finally:
        _nesting.active, _nesting.explicit = outer, explicit_outer
        if torch.get_num_threads() != torch_before:
            torch.set_num_threads(torch_before)
        if numba_before is not None:
            numba.set_num_threads(numba_before)


def thread_policy(func: F) -> F:
    """Decorate a public operation so that it runs under :func:`limit_threads` (automatic
    count, or the caller's torch count when lower); inside :func:`limit_threads` (a CLI
    command with ``--threads``, ``fit(threads=...)``) it keeps that choice."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if getattr(_nesting, "active", False):  # inside limit_threads: keep its choice
            return func(*args, **kwargs)
        with limit_threads():
            return func(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


_nesting = threading.local()
