"""One heavy clip model (MAE-DFER) per batch, shared by every call's task, batching across calls.

Each call's vision pass cuts only a few clips (selective inference), so running the model inside
every call task would load it once per worker and feed the GPU tiny batches. Instead the batch
starts one Ray actor holding the model (on a GPU when the cluster has one); call tasks send
their clips to it, and ``ClipBatcher`` merges requests that arrive together from different calls
into batches of up to ``vision.clip_batch_size`` clips, waiting at most ``max_wait_s`` for
company. The vision pass sees a plain ``ClipModel`` and does not know where the model runs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from pipeline.settings import Settings


@dataclass
class BatchStats:
    batches: int = 0
    clips: int = 0
    requests: int = 0
    sizes: list[int] = field(default_factory=list)  # clips per model call, in order


class ClipBatcher:
    """Merges concurrent ``submit`` calls into model batches of at most ``max_batch`` clips.

    A request is never split, so a batch may exceed max_batch only when one request alone does.
    The model runs in a worker thread: the event loop keeps accepting requests meanwhile.
    """

    def __init__(self, classify: Callable[[np.ndarray], np.ndarray], max_batch: int, max_wait_s: float = 0.05):
        self._classify = classify
        self._max_batch = max_batch
        self._max_wait_s = max_wait_s
        self._queue: asyncio.Queue | None = None
        self._worker: asyncio.Task | None = None
        self.stats = BatchStats()

    async def submit(self, clips: np.ndarray) -> np.ndarray:
        if self._queue is None:  # created on first use, inside the loop that serves requests
            self._queue = asyncio.Queue()
            self._worker = asyncio.get_running_loop().create_task(self._serve())
        future = asyncio.get_running_loop().create_future()
        await self._queue.put((clips, future))
        return await future

    async def _serve(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self._queue.get()]
            size = len(batch[0][0])
            deadline = loop.time() + self._max_wait_s
            while size < self._max_batch:
                try:
                    item = await asyncio.wait_for(self._queue.get(), timeout=max(0.0, deadline - loop.time()))
                except asyncio.TimeoutError:
                    break
                if size + len(item[0]) > self._max_batch:
                    await self._queue.put(item)  # next batch; order within a caller is kept by awaiting
                    break
                batch.append(item)
                size += len(item[0])
            clips = np.concatenate([c for c, _ in batch])
            try:
                probs = await loop.run_in_executor(None, self._classify, clips)
            except Exception as exc:  # noqa: BLE001 - every waiting caller gets the error
                for _, future in batch:
                    future.set_exception(exc)
                continue
            self.stats.batches += 1
            self.stats.clips += len(clips)
            self.stats.requests += len(batch)
            self.stats.sizes.append(len(clips))
            offset = 0
            for c, future in batch:
                future.set_result(probs[offset:offset + len(c)])
                offset += len(c)


class ClipModelServer:
    """The Ray actor's body (wrapped with ray.remote in ``start_clip_server``)."""

    def __init__(self, settings: dict):
        from pipeline.stages.vision import face_expression_clips

        parsed = Settings.from_dict(settings)
        self._model = face_expression_clips.load_clip_model(parsed)
        self._classes = tuple(self._model.classes)
        self._batcher = ClipBatcher(self._model.predict, parsed.vision.clip_batch_size)

    def describe(self) -> tuple[tuple[str, ...], str, list[str]]:
        return self._classes, self._model.version, list(self._model.providers)

    async def classify(self, clips: np.ndarray) -> np.ndarray:
        return await self._batcher.submit(clips)

    def stats(self) -> BatchStats:
        return self._batcher.stats


def start_clip_server(settings: Settings):
    """Start the shared clip-model actor; None when off. ``vision.device``: ``cuda`` always asks
    for a GPU (an autoscaling cluster then starts a GPU node, so its GPU group can rest at zero
    nodes); ``auto`` asks for one only when the cluster has one now; ``cpu`` never."""
    if not settings.vision.clip_model:
        return None
    import ray

    device = settings.vision.device
    gpus = 1 if device == "cuda" or (device == "auto" and ray.cluster_resources().get("GPU", 0) >= 1) else 0
    actor = ray.remote(ClipModelServer).options(num_cpus=1, num_gpus=gpus, max_concurrency=256)
    return actor.remote(settings.to_dict())


@dataclass(frozen=True)
class RemoteClassify:
    """A picklable ``classify`` that forwards to the shared actor (used inside call tasks)."""

    server: object  # ray.actor.ActorHandle

    def __call__(self, clips: np.ndarray) -> np.ndarray:
        import ray

        return ray.get(self.server.classify.remote(clips))
