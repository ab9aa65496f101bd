"""The generated test set covers every condition it promises (slow: generates 12 calls)."""

from __future__ import annotations

import json

import soundfile as sf

from pipeline.devtools.evaluation import load_rttm
from pipeline.devtools.synth.call_sets import generate_test_set


def test_test_set_covers_the_conditions(tmp_path):
    calls = generate_test_set(tmp_path / "media", seed=0, per_condition=1, truth_dir=tmp_path / "truth")
    assert len(calls) == 12 and len({c.call_id for c in calls}) == 12
    conditions = {(c.n_speakers, c.snr_db, c.stereo) for c in calls}
    assert conditions == {(n, snr, st) for n in (2, 3, 4) for snr in (20.0, 10.0) for st in (False, True)}
    for c in calls:
        assert c.call_id.startswith(c.condition) and c.condition == (
            f"{c.n_speakers}spk-tel-{c.snr_db:.0f}db-{'stereo' if c.stereo else 'mono'}")
        assert ("-ov-" in c.call_id) == c.overlap
        assert sf.info(c.audio_path).channels == (2 if c.stereo else 1)
        assert len(load_rttm(c.rttm_path)[c.call_id].labels()) == c.n_speakers
        assert (c.pii_path is not None) == bool(c.identifiers)
        assert json.loads(json.dumps(c.describe()))["condition"] == c.condition
    # Overlap and identifiers each come with and without, in mono and stereo, at both SNRs.
    for flag in ("overlap", "identifiers"):
        for key in ("stereo", "snr_db"):
            seen = {(getattr(c, key), bool(getattr(c, flag))) for c in calls}
            assert len(seen) == 4, (flag, key, seen)
