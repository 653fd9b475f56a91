"""Give freed heap back to the OS, so that a sidecar's RSS returns to idle after a burst.

glibc keeps memory freed by the Rust core in its arenas: after 100 concurrent
uploads a sidecar measured 17-75 MB above idle long after they ended, and
``malloc_trim(0)`` brought it back within 0.5 MB. The data-plane crates forbid
``unsafe``, so the two calls are made from Python, through ctypes:

* at start, ``mallopt(M_MMAP_THRESHOLD, 64 KiB)``: larger blocks (retry
  buffers, big reads) are mapped on their own and unmapped when freed, instead
  of the threshold growing with every large free (glibc's dynamic threshold);
* :meth:`Trimmer.tick`, called from the process's poll loop: ``malloc_trim(0)``
  at most once per ``every`` seconds.

On a C library without these (musl, macOS) both are no-ops.
"""

from __future__ import annotations

import ctypes
import time
from collections.abc import Callable

__all__ = ["Trimmer"]

_M_MMAP_THRESHOLD = -3
"""glibc's ``mallopt`` parameter number (malloc.h)."""


class Trimmer:
    """Tunes glibc's allocator once, then trims its arenas now and then."""

    def __init__(self, every: float = 1.0, mmap_threshold: int = 64 * 1024) -> None:
        self.every = every
        self._last = time.monotonic()
        self._trim: Callable[[int], object] | None = None
        try:
            libc = ctypes.CDLL(None)
            libc.mallopt(_M_MMAP_THRESHOLD, mmap_threshold)
            self._trim = libc.malloc_trim
        except (OSError, AttributeError):
            self._trim = None

    def tick(self, now: float) -> None:
        """Trim if ``every`` seconds have passed since the last trim (``now``: monotonic)."""
        if self._trim is not None and now - self._last >= self.every:
            self._last = now
            self._trim(0)
