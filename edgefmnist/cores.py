"""The CPU cores this process may run on: the one count behind every default of threads and workers.

edgefmnist infer --image 'photos/*.jpg'   # preprocesses on that many threads by default
"""

from __future__ import annotations

import os


def available_cores() -> int:
    """The cores this process may run on, at least 1: its CPU affinity (``os.sched_getaffinity``,
    which a container's or ``taskset``'s limit narrows) where the system has one (Linux), else
    ``os.cpu_count()`` (macOS, Windows)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)
