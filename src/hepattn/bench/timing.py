"""Device-synchronised median timing and peak memory of one callable.

Peak memory is what a call needs on top of what was resident before it (weights, optimizer state,
inputs), at its highest point:

- CUDA: ``torch.cuda.max_memory_allocated`` minus ``memory_allocated`` before: the tensors handed out by
  torch's caching allocator, without its cache, the CUDA context or library workspaces.
- CPU (Linux): the peak resident set size (``VmHWM``, reset through ``/proc/self/clear_refs``) minus the
  resident size before: every page the process touched, torch's or not. Elsewhere it is not measured.
"""

import ctypes
import ctypes.util
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

MB = 2**20
GB = 2**30
STATUS = Path("/proc/self/status")
CLEAR_REFS = Path("/proc/self/clear_refs")


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _status_kb(key: str) -> int:
    for line in STATUS.read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1])
    raise KeyError(key)


def _libc():
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


LIBC = _libc()
M_MMAP_THRESHOLD = -3  # mallopt parameter (glibc malloc.h)


def release_freed_memory() -> None:
    """Make freed CPU memory leave the resident set, so that a later peak is the call's own.

    glibc keeps freed blocks resident for reuse and, after the first large free, serves blocks of up to
    32 MB from its heap instead of fresh mappings; a warm-up call would then hide the timed calls' needs.
    A fixed mmap threshold (which also stops that adaptation) and ``malloc_trim`` undo both.
    """
    if LIBC is not None and hasattr(LIBC, "mallopt"):
        LIBC.mallopt(M_MMAP_THRESHOLD, 256 * 1024)
        LIBC.malloc_trim(0)


def cpu_peak_supported() -> bool:
    """Whether this process can reset and read its peak resident set size (Linux >= 4.0)."""
    try:
        CLEAR_REFS.write_text("5")
        return _status_kb("VmHWM") > 0
    except (OSError, KeyError):
        return False


class PeakMemory:
    """Bytes above the starting point at the highest point between ``start()`` and ``stop()``."""

    def __init__(self, device: torch.device):
        self.device = device
        self.cpu = device.type == "cpu" and cpu_peak_supported()
        self.base = 0

    @property
    def method(self) -> str:
        if self.device.type == "cuda":
            return "torch.cuda.max_memory_allocated - memory_allocated before"
        return "VmHWM - VmRSS before (/proc/self)" if self.cpu else "not measured"

    def start(self) -> int:
        """Reset the peak; returns the resident bytes it is measured from."""
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            self.base = torch.cuda.memory_allocated(self.device)
        elif self.cpu:
            release_freed_memory()
            CLEAR_REFS.write_text("5")
            self.base = _status_kb("VmRSS") * 1024
        return self.base

    def stop(self) -> int | None:
        if self.device.type == "cuda":
            return torch.cuda.max_memory_allocated(self.device) - self.base
        if self.cpu:
            return _status_kb("VmHWM") * 1024 - self.base
        return None


@dataclass
class Measurement:
    """Wall times of the timed calls (ms), the first warm-up call (compilation included) and the peak."""

    times_ms: list[float]
    first_ms: float | None
    peak_bytes: int | None
    base_bytes: int

    @property
    def median_ms(self) -> float:
        return statistics.median(self.times_ms)

    @property
    def min_ms(self) -> float:
        return min(self.times_ms)


def _timed(fn: Callable[[], object], device: torch.device) -> float:
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    return (time.perf_counter() - start) * 1e3


def measure(fn: Callable[[], object], device: torch.device, repeats: int = 3, warmup: int = 1) -> Measurement:
    """Call ``fn`` ``warmup`` times, then time ``repeats`` calls; peak memory over the timed calls.

    The warm-up absorbs compilation, lazy initialisation and the first touch of library code pages
    (which count as resident memory on CPU), so that the peak belongs to the call itself.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}")
    if device.type == "cpu":
        release_freed_memory()
    first = None
    for i in range(warmup):
        t = _timed(fn, device)
        first = t if i == 0 else first
    peak = PeakMemory(device)
    base = peak.start()
    times = [_timed(fn, device) for _ in range(repeats)]
    return Measurement(times, first, peak.stop(), base)
