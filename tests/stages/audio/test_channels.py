import numpy as np
from pyannote.core import Segment, Timeline

from pipeline.stages.audio.channels import detect_layout, drop_crosstalk

SR = 16000


def _bursts(spans, n, rng, level=0.3):
    x = np.zeros(n, np.float32)
    for a, b in spans:
        x[int(a * SR):int(b * SR)] = level * rng.standard_normal(int(b * SR) - int(a * SR))
    return x


def test_layouts():
    rng = np.random.default_rng(0)
    n = 20 * SR
    agent = _bursts([(0, 4), (8, 12), (16, 18)], n, rng)
    customer = _bursts([(4.5, 7.5), (12.5, 15.5)], n, rng)
    floor = 0.001 * rng.standard_normal((2, n)).astype(np.float32)
    assert detect_layout(None, SR).kind == "mono"
    assert detect_layout(np.stack([agent, customer]) + floor, SR).kind == "stereo"
    assert "identical" in detect_layout(np.stack([agent + customer, agent + customer]) + floor * 0.01, SR).reason
    assert "silent" in detect_layout(np.stack([agent + customer, np.zeros(n, np.float32)]), SR).reason
    # A stereo room recording: both parties on both channels at similar levels.
    room = np.stack([agent + 0.8 * customer, 0.8 * agent + customer]) + floor
    room[1] = np.roll(room[1], 40)  # a little delay keeps the channels from being identical
    layout = detect_layout(room, SR)
    assert layout.kind == "mono" and "both channels" in layout.reason


def test_crosstalk_regions_are_dropped():
    rng = np.random.default_rng(1)
    n = 10 * SR
    own = _bursts([(0, 3)], n, rng) + _bursts([(5, 8)], n, rng, level=0.01)  # 5-8 s: faint echo
    other = _bursts([(5, 8)], n, rng)
    kept = drop_crosstalk(Timeline([Segment(0, 3), Segment(5, 8)]), own, other, SR)
    assert list(kept) == [Segment(0, 3)]
