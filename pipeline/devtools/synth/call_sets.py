"""Sets of synthetic calls: the varied demo set and the evaluation test set over speaker count,
SNR, channels and overlap (optionally with stereo calls whose customer is 0-10 dB quieter)."""

from __future__ import annotations

from pathlib import Path

from pipeline.devtools.synth.calls import SyntheticCall, generate_call
from pipeline.devtools.synth.dialogue import SCRIPTS

# The demo set cycles through these: speaker counts, channels, SNRs, containers, with and
# without a frustrated stretch, one with overlaps.
_DEMO_VARIANTS = (
    dict(n_speakers=2, telephone=True, snr_db=20.0, fmt="wav", frustrated=True),
    dict(n_speakers=3, telephone=True, snr_db=15.0, fmt="flac", frustrated=True),
    dict(n_speakers=2, telephone=False, snr_db=25.0, fmt="mp3", frustrated=False),
    dict(n_speakers=4, telephone=True, snr_db=20.0, fmt="m4a", frustrated=True),
    dict(n_speakers=2, telephone=True, snr_db=12.0, fmt="wav", frustrated=True, overlap=True),
)


def generate_demo_set(out_dir: Path, n_calls: int = 3, seed: int = 0,
                      truth_dir: Path | None = None) -> list[SyntheticCall]:
    """A varied set of calls named ``synth-<seed>-<i>``; consecutive calls use different scripts."""
    return [
        generate_call(out_dir, f"synth-{seed:03d}-{i:03d}", seed=seed * len(SCRIPTS) + i,
                      truth_dir=truth_dir, **_DEMO_VARIANTS[i % len(_DEMO_VARIANTS)])
        for i in range(n_calls)
    ]


TEST_SET_SPEAKERS = (2, 3, 4)
TEST_SET_SNRS_DB = (20.0, 10.0)
# Stereo calls with the customer's channel this much quieter than the agent's (set, not drawn).
TEST_SET_CUSTOMER_GAINS_DB = (0.0, -5.0, -10.0)


def test_set_condition(n_speakers: int, snr_db: float, stereo: bool, customer_gain_db: float | None = None) -> str:
    """The condition's name, the head of its calls' ids: ``3spk-tel-10db-stereo``, or with the
    customer's level set, ``2spk-tel-20db-stereo-cust-10db``."""
    name = f"{n_speakers}spk-tel-{snr_db:.0f}db-{'stereo' if stereo else 'mono'}"
    return name if customer_gain_db is None else f"{name}-cust{customer_gain_db:.0f}db"


def generate_test_set(out_dir: Path, seed: int = 0, per_condition: int = 1, *,
                      truth_dir: Path | None = None,
                      customer_gains_db: tuple[float, ...] = ()) -> list[SyntheticCall]:
    """Telephone calls with known truth: 2/3/4 speakers x SNR 20/10 dB x mono/stereo.

    Call ids are ``<condition>[-ov]-<i>``, e.g. ``3spk-tel-10db-stereo-ov-01``: ``-ov`` marks a
    call with overlapped speaker changes. Half the calls also have identifiers read out
    (``SyntheticCall.pii_path``). Overlap and identifiers are spread so that even one call per
    condition has both, with and without, in mono and stereo and at both SNRs. Stereo calls'
    metadata does not name the channels: the pipeline has to infer which one is the agent.

    ``customer_gains_db`` (e.g. `TEST_SET_CUSTOMER_GAINS_DB`) adds two-speaker stereo
    conditions, SNR 20/10 dB x each customer level, e.g. ``2spk-tel-10db-stereo-cust-5db``:
    plain calls (no overlap, no identifiers), for the customer's words on a quieter channel.
    """
    calls = []
    grid = [(n, snr, stereo) for n in TEST_SET_SPEAKERS for snr in TEST_SET_SNRS_DB for stereo in (False, True)]
    for c, (n_speakers, snr_db, stereo) in enumerate(grid):
        condition = test_set_condition(n_speakers, snr_db, stereo)
        for i in range(per_condition):
            overlap = (i + c // 2 + c // 4) % 2 == 1
            calls.append(generate_call(
                out_dir, f"{condition}{'-ov' if overlap else ''}-{i:02d}",
                seed=seed * 1000 + c * per_condition + i, n_speakers=n_speakers, telephone=True,
                snr_db=snr_db, stereo=stereo, overlap=overlap, pii=(i + c + c // 2) % 2 == 0,
                frustrated=(c + i) % 3 != 2, truth_dir=truth_dir, condition=condition,
            ))
    levels = [(snr, gain) for gain in customer_gains_db for snr in TEST_SET_SNRS_DB]
    for c, (snr_db, gain) in enumerate(levels):
        condition = test_set_condition(2, snr_db, True, gain)
        for i in range(per_condition):
            calls.append(generate_call(
                out_dir, f"{condition}-{i:02d}", seed=seed * 1000 + 500 + c * per_condition + i, n_speakers=2,
                telephone=True, snr_db=snr_db, stereo=True, frustrated=(c + i) % 3 != 2, truth_dir=truth_dir,
                condition=condition, customer_gain_db=gain,
            ))
    return calls
