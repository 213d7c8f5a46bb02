"""The timer reports medians of synchronised calls and the memory a call needs on top of what exists."""

import pytest
import torch

from hepattn.bench.timing import MB, PeakMemory, cpu_peak_supported, measure

CPU = torch.device("cpu")


def test_median_of_the_timed_calls_after_warmup():
    calls = []
    m = measure(lambda: calls.append(1), CPU, repeats=5, warmup=2)
    assert len(calls) == 7 and len(m.times_ms) == 5
    assert min(m.times_ms) <= m.median_ms <= max(m.times_ms)


@pytest.mark.skipif(not cpu_peak_supported(), reason="needs /proc/self/clear_refs (Linux)")
def test_cpu_peak_is_the_memory_the_call_touches():
    size = 256 * MB

    def allocate():
        return torch.ones(size // 4).sum()  # 256 MiB of float32, written, then freed

    m = measure(allocate, CPU, repeats=2, warmup=1)
    assert 0.9 * size <= m.peak_bytes <= 1.3 * size
    assert measure(lambda: None, CPU, repeats=2).peak_bytes < 16 * MB


@pytest.mark.skipif(not cpu_peak_supported(), reason="needs /proc/self/clear_refs (Linux)")
def test_cpu_peak_memory_is_the_allocation_in_its_window_and_start_resets_it():
    size = 128 * MB
    peak = PeakMemory(CPU)
    assert peak.method == "VmHWM - VmRSS before (/proc/self)"
    peak.start()
    block = torch.ones(size // 4)  # 128 MiB of float32, written
    del block
    assert 0.9 * size <= peak.stop() <= 1.3 * size
    peak.start()  # the freed block is not resident now, and its peak is forgotten
    assert peak.stop() < 16 * MB


def test_peak_memory_is_none_where_it_is_not_measured(monkeypatch):
    assert PeakMemory(torch.device("meta")).method == "not measured"
    assert PeakMemory(torch.device("meta")).stop() is None
    monkeypatch.setattr("hepattn.bench.timing.cpu_peak_supported", lambda: False)  # e.g. macOS
    peak = PeakMemory(CPU)
    peak.start()
    assert peak.method == "not measured" and peak.stop() is None
