"""ClipBatcher: clips from concurrent callers share model batches, and each gets its own answer."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from pipeline.compute.clip_server import ClipBatcher


class _RecordingModel:
    """Returns each clip's id in column 0 so callers can check they got their own rows back."""

    def __init__(self, delay_s: float = 0.0):
        self.calls: list[int] = []
        self.delay_s = delay_s
        self.lock = threading.Lock()

    def __call__(self, clips: np.ndarray) -> np.ndarray:
        with self.lock:
            self.calls.append(len(clips))
        time.sleep(self.delay_s)
        out = np.zeros((len(clips), 7), np.float32)
        out[:, 0] = clips[:, 0, 0, 0, 0]
        return out


def _clips(ids: list[int]) -> np.ndarray:
    clips = np.zeros((len(ids), 16, 4, 4, 3), np.uint8)
    clips[:, 0, 0, 0, 0] = ids
    return clips


def test_concurrent_requests_are_merged_and_answered_in_order():
    model = _RecordingModel()
    batcher = ClipBatcher(model, max_batch=16, max_wait_s=0.05)

    async def main():
        requests = [[10 * r + i for i in range(3)] for r in range(5)]  # 5 callers x 3 clips
        return requests, await asyncio.gather(*(batcher.submit(_clips(ids)) for ids in requests))

    requests, answers = asyncio.run(main())
    for ids, probs in zip(requests, answers):
        assert probs[:, 0].tolist() == ids
    assert model.calls == [15]  # one model call for all five callers
    assert batcher.stats.requests == 5 and batcher.stats.batches == 1


def test_batches_never_exceed_max_batch_unless_one_request_does():
    model = _RecordingModel(delay_s=0.01)
    batcher = ClipBatcher(model, max_batch=8, max_wait_s=0.05)

    async def main():
        sizes = [3, 3, 3, 3, 12, 1]
        return await asyncio.gather(*(batcher.submit(_clips(list(range(n)))) for n in sizes))

    answers = asyncio.run(main())
    assert [len(a) for a in answers] == [3, 3, 3, 3, 12, 1]
    assert sum(model.calls) == 25
    assert all(n <= 8 or n == 12 for n in model.calls)
    assert len(model.calls) < 6  # merged, not one call per request


def test_a_model_error_reaches_every_waiting_caller_and_the_batcher_goes_on():
    state = {"fail": True}

    def flaky(clips):
        if state.pop("fail", False):
            raise RuntimeError("CUDA out of memory")
        return np.ones((len(clips), 7), np.float32)

    batcher = ClipBatcher(flaky, max_batch=8, max_wait_s=0.02)

    async def main():
        first = await asyncio.gather(batcher.submit(_clips([1])), batcher.submit(_clips([2])), return_exceptions=True)
        second = await batcher.submit(_clips([3, 4]))
        return first, second

    first, second = asyncio.run(main())
    assert all(isinstance(r, RuntimeError) and "out of memory" in str(r) for r in first)
    assert second.shape == (2, 7)


@pytest.mark.parametrize("max_wait_s", [0.0, 0.02])
def test_a_lone_request_is_not_held_back_beyond_the_wait(max_wait_s):
    batcher = ClipBatcher(_RecordingModel(), max_batch=64, max_wait_s=max_wait_s)
    started = time.perf_counter()
    out = asyncio.run(batcher.submit(_clips([7])))
    assert out[0, 0] == 7
    assert time.perf_counter() - started < 1.0
