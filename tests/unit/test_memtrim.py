"""The hub gives freed heap back to the kernel (real glibc, this process's own RSS)."""

from __future__ import annotations

import gc
import time

import pytest

from hub_config import memtrim

pytestmark = pytest.mark.skipif(
    memtrim.rss_bytes() == 0 or not memtrim.MemoryTrimmer().available,
    reason="needs Linux /proc and glibc's malloc_trim",
)

_MB = 1 << 20


def _fragmented_garbage() -> list[bytes]:
    """~100 MB of 4 KB objects, 90 % of them freed again: the heap a spawn storm leaves behind."""
    blobs = [bytes(4000) + i.to_bytes(4, "little") for i in range(25_000)]
    kept = blobs[::10]
    del blobs
    gc.collect()
    return kept


def test_trim_returns_freed_heap_to_the_kernel() -> None:
    memtrim.malloc_trim()
    kept = _fragmented_garbage()
    before = memtrim.rss_bytes()
    assert memtrim.malloc_trim() is True
    after = memtrim.rss_bytes()
    assert before - after > 50 * _MB, f"RSS {before / _MB:.0f} MB -> {after / _MB:.0f} MB"
    assert all(len(b) == 4004 for b in kept)  # what is still referenced is untouched


def test_trimmer_thread_shrinks_rss_after_a_burst_without_being_asked() -> None:
    trimmer = memtrim.MemoryTrimmer(interval=0.05)
    memtrim.malloc_trim()
    kept = _fragmented_garbage()
    before = memtrim.rss_bytes()
    assert trimmer.start() is True
    try:
        deadline = time.monotonic() + 10
        while memtrim.rss_bytes() > before - 50 * _MB and time.monotonic() < deadline:
            time.sleep(0.05)
        assert memtrim.rss_bytes() <= before - 50 * _MB
    finally:
        trimmer.stop()
    assert len(kept) == 2500


def test_trimmer_does_nothing_where_libc_cannot_trim(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memtrim, "_TRIM", None)
    trimmer = memtrim.MemoryTrimmer(interval=0.01)
    assert trimmer.start() is False
    assert trimmer._thread is None
    assert memtrim.malloc_trim() is False
