"""The micro-batcher: windows, the batch cap, ordering, failures and closing."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from platform_core.inference.batcher import BatcherClosed, MicroBatcher


def doubling(calls: list[list[int]]):  # type: ignore[no-untyped-def]
    def run(items: list[int]) -> list[int]:
        calls.append(list(items))
        return [2 * i for i in items]

    return run


def test_items_within_one_window_run_as_one_batch() -> None:
    calls: list[list[int]] = []
    batcher = MicroBatcher(doubling(calls), window_ms=200, max_batch=64)
    try:
        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(lambda i: batcher.submit(i).result(timeout=5), range(8)))
    finally:
        batcher.close()
    assert results == [2 * i for i in range(8)]
    assert len(calls) == 1
    assert sorted(calls[0]) == list(range(8))


def test_max_batch_caps_a_batch_and_keeps_order() -> None:
    calls: list[list[int]] = []
    batcher = MicroBatcher(doubling(calls), window_ms=1000, max_batch=4)
    try:
        futures = batcher.submit_many(list(range(10)))
        results = [f.result(timeout=5) for f in futures]
    finally:
        batcher.close()
    assert results == [2 * i for i in range(10)]
    assert [len(c) for c in calls] == [4, 4, 2]
    assert [i for c in calls for i in c] == list(range(10))


def test_a_full_batch_does_not_wait_for_the_window() -> None:
    calls: list[list[int]] = []
    batcher = MicroBatcher(doubling(calls), window_ms=10_000, max_batch=3)
    try:
        start = time.monotonic()
        futures = batcher.submit_many([1, 2, 3])
        assert [f.result(timeout=5) for f in futures] == [2, 4, 6]
        assert time.monotonic() - start < 2
    finally:
        batcher.close()


def test_a_lone_item_waits_about_one_window() -> None:
    batcher = MicroBatcher(doubling([]), window_ms=50, max_batch=8)
    try:
        start = time.monotonic()
        assert batcher.submit(21).result(timeout=5) == 42
        elapsed = time.monotonic() - start
    finally:
        batcher.close()
    assert 0.04 <= elapsed < 1.0


def test_items_arriving_during_a_batch_form_the_next_batch() -> None:
    calls: list[list[int]] = []
    gate = threading.Event()

    def slow(items: list[int]) -> list[int]:
        calls.append(list(items))
        gate.wait(5)
        return items

    batcher = MicroBatcher(slow, window_ms=0, max_batch=32)
    try:
        first = batcher.submit(0)
        while not calls:
            time.sleep(0.001)
        rest = batcher.submit_many([1, 2, 3, 4, 5])
        gate.set()
        assert first.result(timeout=5) == 0
        assert [f.result(timeout=5) for f in rest] == [1, 2, 3, 4, 5]
    finally:
        batcher.close()
    assert calls == [[0], [1, 2, 3, 4, 5]]


def test_a_failing_batch_fails_each_of_its_items_and_the_batcher_goes_on() -> None:
    def run(items: list[int]) -> list[int]:
        if 13 in items:
            raise ValueError("unlucky")
        return items

    batcher = MicroBatcher(run, window_ms=100, max_batch=8)
    try:
        bad = batcher.submit_many([1, 13])
        for f in bad:
            with pytest.raises(ValueError, match="unlucky"):
                f.result(timeout=5)
        assert batcher.submit(7).result(timeout=5) == 7
    finally:
        batcher.close()


def test_a_wrong_number_of_results_is_an_error() -> None:
    batcher: MicroBatcher[int, int] = MicroBatcher(lambda items: items[:-1], window_ms=0, max_batch=8)
    try:
        futures = batcher.submit_many([1, 2])
        with pytest.raises(RuntimeError, match="1 results for 2 items"):
            futures[0].result(timeout=5)
    finally:
        batcher.close()


def test_closing_finishes_queued_items_and_refuses_new_ones() -> None:
    batcher = MicroBatcher(doubling([]), window_ms=10_000, max_batch=100)
    futures = batcher.submit_many([1, 2])
    batcher.close()
    assert [f.result(timeout=5) for f in futures] == [2, 4]
    with pytest.raises(BatcherClosed):
        batcher.submit(3)


def test_async_callers_await_the_future() -> None:
    calls: list[list[int]] = []
    batcher = MicroBatcher(doubling(calls), window_ms=100, max_batch=64)

    async def main() -> list[int]:
        return list(await asyncio.gather(*(asyncio.wrap_future(batcher.submit(i)) for i in range(16))))

    try:
        assert asyncio.run(main()) == [2 * i for i in range(16)]
    finally:
        batcher.close()
    assert len(calls) == 1
    assert batcher.stats.largest == 16
