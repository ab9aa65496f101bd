"""Build a tiny random-weight pyannote.audio speaker-diarization pipeline directory. TESTS ONLY.

The weights are random: the output of this pipeline says nothing about diarization quality and
must never be used for a quality claim. It exists so that tests run the real loading and
inference code of the ``pyannote`` diarization backend with no hub access and no weights in git.

The directory has the layout of ``pyannote/speaker-diarization-community-1`` (what
``Pipeline.from_pretrained(<local dir>)`` expects in pyannote.audio 4.x), with smaller models:

    config.yaml                    SpeakerDiarization, ``$model/<subfolder>`` references
    segmentation/pytorch_model.bin PyanNet (SincNet > 1 small BiLSTM > 1 linear), powerset
                                   3 speakers per 10 s chunk, at most 2 at once (as community-1)
    embedding/pytorch_model.bin    XVectorSincNet, 64-d, SincNet stride 40 (community-1 uses
                                   WeSpeaker ResNet34: far too slow on CPU for a test)
    plda/xvec_transform.npz        LDA + centring (mean1, mean2, lda), as VBx reads it
    plda/plda.npz                  PLDA (mu, tr, psi)

Usage: python models/build_test_pyannote_pipeline.py --out DIR [--seed N]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

EMBEDDING_DIM = 64
LDA_DIM = 32
CHUNK_S = 10.0

CONFIG_YAML = """\
# TEST PIPELINE, random weights: never use for quality claims.
# Built by models/build_test_pyannote_pipeline.py.
dependencies:
  pyannote.audio: {version}
pipeline:
  name: pyannote.audio.pipelines.SpeakerDiarization
  params:
    segmentation: $model/segmentation
    embedding: $model/embedding
    plda: $model/plda
    clustering: VBxClustering
    embedding_exclude_overlap: true
    segmentation_batch_size: 32
    embedding_batch_size: 32
params:
  clustering:
    threshold: 0.6
    Fa: 0.07
    Fb: 0.8
  segmentation:
    min_duration_off: 0.0
"""


def _save_checkpoint(model, path: Path) -> None:
    """Write what ``Model.from_pretrained`` reads: a Lightning checkpoint (state dict and
    hyper-parameters) plus pyannote's own section (version, class, specifications), which
    ``Model.on_save_checkpoint`` fills in exactly as a Lightning Trainer would."""
    import lightning
    import torch

    checkpoint = {
        "state_dict": model.state_dict(),
        "hyper_parameters": dict(model.hparams),
        "pytorch-lightning_version": lightning.__version__,
    }
    model.on_save_checkpoint(checkpoint)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(checkpoint, path)


def _segmentation_model():
    from pyannote.audio.core.task import Problem, Resolution, Specifications
    from pyannote.audio.models.segmentation import PyanNet

    model = PyanNet(lstm={"hidden_size": 16, "num_layers": 1}, linear={"hidden_size": 16, "num_layers": 1})
    model.specifications = Specifications(
        problem=Problem.MONO_LABEL_CLASSIFICATION,
        resolution=Resolution.FRAME,
        duration=CHUNK_S,
        classes=["speaker#1", "speaker#2", "speaker#3"],
        powerset_max_classes=2,
        permutation_invariant=True,
    )
    model.setup()  # adds the task-dependent classifier sized from the specifications
    return model


def _embedding_model():
    from pyannote.audio.core.task import Problem, Resolution, Specifications
    from pyannote.audio.models.embedding import XVectorSincNet

    # Stride 40 instead of 10: 4x fewer frames for the TDNN, which dominates the test's run time.
    model = XVectorSincNet(sincnet={"stride": 40}, dimension=EMBEDDING_DIM)
    model.specifications = Specifications(
        problem=Problem.REPRESENTATION, resolution=Resolution.CHUNK, duration=CHUNK_S, min_duration=1.0
    )
    model.setup()
    return model


def _plda(rng: np.random.Generator) -> tuple[dict, dict]:
    """Well-conditioned random LDA and PLDA: orthonormal projections, decreasing positive
    between-class variances (VBx solves an eigenproblem on them)."""
    lda, _ = np.linalg.qr(rng.standard_normal((EMBEDDING_DIM, LDA_DIM)))
    tr, _ = np.linalg.qr(rng.standard_normal((LDA_DIM, LDA_DIM)))
    transform = {
        "mean1": rng.standard_normal(EMBEDDING_DIM) * 0.01,
        "mean2": rng.standard_normal(LDA_DIM) * 0.01,
        "lda": lda,
    }
    plda = {"mu": np.zeros(LDA_DIM), "tr": tr, "psi": np.linspace(5.0, 0.5, LDA_DIM)}
    return transform, plda


def build_test_pipeline(out_dir: str | Path, seed: int = 0) -> Path:
    """Write the test pipeline directory; returns it. Deterministic for a given seed."""
    import torch
    from pyannote.audio import __version__

    out = Path(out_dir)
    torch.manual_seed(seed)
    _save_checkpoint(_segmentation_model(), out / "segmentation" / "pytorch_model.bin")
    _save_checkpoint(_embedding_model(), out / "embedding" / "pytorch_model.bin")
    transform, plda = _plda(np.random.default_rng(seed))
    (out / "plda").mkdir(parents=True, exist_ok=True)
    np.savez(out / "plda" / "xvec_transform.npz", **transform)
    np.savez(out / "plda" / "plda.npz", **plda)
    (out / "config.yaml").write_text(CONFIG_YAML.format(version=__version__))
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path, help="directory to write")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    print(build_test_pipeline(args.out, args.seed))


if __name__ == "__main__":
    main()
