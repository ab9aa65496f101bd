"""The one surface every stage shows the one-call path.

Each stage module defines ``STAGE = Stage(...)``: the name its time is recorded under in
``stage_metrics``, its backend, its model version and its device given the settings, and its
entry function (``run``), which takes the stage's typed input and its settings section. The
one-call path runs stages through ``run`` and derives every ``stage_metrics`` column from
these, so no list of backends is kept by hand.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pipeline.settings import Settings


def on_cpu(settings: Settings) -> str:
    return "cpu"


def no_model(settings: Settings) -> None:
    return None


def torch_device(requested: str) -> str:
    """"cuda" when asked for, or when "auto" and torch sees a GPU; else "cpu"."""
    if requested == "cuda":
        return "cuda"
    if requested != "auto":
        return "cpu"
    import torch  # only when a stage can run on a GPU

    return "cuda" if torch.cuda.is_available() else "cpu"


@dataclass(frozen=True)
class StageInfo:
    """What ``stage_metrics`` says of a stage besides its time."""

    backend: str
    model_key: str | None  # where its model's version is in manifest.versions
    device: str


@dataclass(frozen=True)
class Stage:
    name: str  # its stage_metrics row
    backend: Callable[[Settings], str]
    run: Callable[..., Any] | None = None  # None for a part timed inside another stage's run
    # The key of its model in manifest.versions (a stage may share another's model), and the
    # version given the settings; None where the version is only known once the model is loaded.
    model_key: str | None = None
    model_version: Callable[[Settings], str | None] = no_model
    device: Callable[[Settings], str] = on_cpu

    def info(self, settings: Settings) -> StageInfo:
        return StageInfo(self.backend(settings), self.model_key, self.device(settings))


def fixed(value: str) -> Callable[[Settings], str]:
    """A backend that does not depend on the settings."""
    return lambda settings: value
