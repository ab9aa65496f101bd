"""Expression class probabilities -> (valence, arousal) on Russell's circumplex, in [-1, 1].

Each class gets fixed circumplex coordinates; a face's valence and arousal are their
expectation under its class probabilities, so the probabilities themselves stay available.

Source of the coordinates (all but ``neutral``): Warriner, A. B., Kuperman, V. & Brysbaert, M.
(2013). Norms of valence, arousal, and dominance for 13,915 English lemmas. *Behavior Research
Methods* 45(4), 1191-1207, doi:10.3758/s13428-012-0314-x; the file ``Ratings_Warriner_et_al.csv``
published with it, columns ``V.Mean.Sum`` and ``A.Mean.Sum`` (mean ratings of all raters on
1 = unhappy/calm ... 9 = happy/excited). The rated word is the class label itself, as FER2013
names it, so no synonym was chosen by hand:

    label     V.Mean.Sum  A.Mean.Sum   (csv row)  ->  valence  arousal = (mean - 5) / 4
    angry        2.53        6.20        423          -0.6175   +0.3000
    disgust      3.32        5.00       3569          -0.4200    0.0000
    fear         2.93        6.14       4524          -0.5175   +0.2850
    happy        8.47        6.05       5596          +0.8675   +0.2625
    sad          2.10        3.49      10583          -0.7250   -0.3775
    surprise     7.44        6.57      12138          +0.6100   +0.3925

``neutral`` is put at the origin by definition (the centre of the circumplex, Russell 1980,
J. Pers. Soc. Psychol. 39(6), 1161-1178): the norm for the word "neutral" rates the word, not
an affect-free state. Limits: these norms rate words, not faces; arousal means are compressed
toward the midpoint, and "surprise" leans pleasant as a word although surprised faces can be
either. Treat the output as an ordinal summary, not a calibrated measurement.
"""

from __future__ import annotations

import numpy as np

CIRCUMPLEX: dict[str, tuple[float, float]] = {
    "angry": (-0.6175, 0.3000),
    "disgust": (-0.4200, 0.0000),
    "fear": (-0.5175, 0.2850),
    "happy": (0.8675, 0.2625),
    "sad": (-0.7250, -0.3775),
    "surprise": (0.6100, 0.3925),
    "neutral": (0.0, 0.0),
}

# Other spellings of the same classes used by other datasets' label lists (DFEW, AffectNet, ...).
_ALIASES = {
    "anger": "angry",
    "disgusted": "disgust",
    "fearful": "fear",
    "afraid": "fear",
    "happiness": "happy",
    "sadness": "sad",
    "surprised": "surprise",
}


def coordinates(classes: tuple[str, ...]) -> np.ndarray:
    """(K, 2) float32 (valence, arousal) for ``classes`` in the given order."""
    rows = []
    for name in classes:
        key = _ALIASES.get(name.lower(), name.lower())
        if key not in CIRCUMPLEX:
            raise ValueError(f"no circumplex coordinates for class {name!r}")
        rows.append(CIRCUMPLEX[key])
    return np.asarray(rows, dtype=np.float32)


def valence_arousal(probs: np.ndarray, classes: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """(N, K) probabilities over ``classes`` -> (valence (N,), arousal (N,)), each in [-1, 1]."""
    probs = np.asarray(probs, dtype=np.float32)
    if probs.ndim != 2 or probs.shape[1] != len(classes):
        raise ValueError(f"probs of shape {probs.shape} do not match {len(classes)} classes")
    expected = probs @ coordinates(classes)
    return expected[:, 0], expected[:, 1]


def confidence(probs: np.ndarray) -> np.ndarray:
    """(N,) in [0, 1]: 1 - entropy / log(K). 1 for a one-hot prediction, 0 for a uniform one.

    Lets downstream fusion down-weight faces where the model hesitates between classes,
    independently of which classes those are.
    """
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or probs.shape[1] < 2:
        raise ValueError(f"expected (N, K>=2) probabilities, got shape {probs.shape}")
    safe = np.clip(probs, 1e-12, 1.0)  # 0 * log 0 taken as 0
    entropy = -(probs * np.log(safe)).sum(axis=1)
    return np.clip(1.0 - entropy / np.log(probs.shape[1]), 0.0, 1.0).astype(np.float32)
