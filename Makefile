# Two commands: `make demo` runs the main job end to end, `make test` passes the tests.
# Both bootstrap what they need (Debian packages, venv, pinned deps) and are quick when done.
VENV ?= .venv
export VENV
PY := $(VENV)/bin/python
CLI := $(VENV)/bin/callaffect
PYTEST_ARGS ?=

.PHONY: setup demo test test-fast bench bench-review bench-vision lock lock-infra-tools clean

setup:
	@bash infra/local/bootstrap.sh

demo: setup
	@$(CLI) demo

test: setup
	@$(PY) -m pytest $(PYTEST_ARGS)

# Unit and integration tests only: everything under tests/e2e/ (marked e2e) is left out; CI runs all.
test-fast: setup
	@$(PY) -m pytest -m "not e2e" $(PYTEST_ARGS)

bench: setup
	@$(PY) bench/bench_analyze.py

# The review app over 10,000 flags on 1,000 calls: queue, call view and plot latency (JSON).
bench-review: setup
	@$(PY) bench/bench_review.py

# Vision speed against fer's own Video.analyze, which needs TensorFlow: a bench-only venv.
FER_VENV ?= $(HOME)/.cache/callaffect/bench-fer-venv
bench-vision: setup
	@stamp="$(FER_VENV)/.req-$$(sha256sum bench/requirements-fer.txt | cut -c1-16)"; \
	  [ -f "$$stamp" ] || { python3 -m venv $(FER_VENV) && $(FER_VENV)/bin/pip install -q --no-deps -r bench/requirements-fer.txt && touch "$$stamp"; }
	@$(PY) bench/bench_vision.py --fer-venv $(FER_VENV)

# Re-resolve requirements.in into exact pins (needs the registries; commit the result).
lock:
	@rm -rf .lock-venv && python3 -m venv .lock-venv && .lock-venv/bin/pip install -q -U pip && \
	  .lock-venv/bin/pip install -q -r requirements.in && \
	  { echo "# Exact pins for every Python dependency, resolved from requirements.in by 'make lock'."; \
	    echo "# CPU profile (onnxruntime). GPU images swap in onnxruntime-gpu: see docker/ray-gpu.Dockerfile."; \
	    .lock-venv/bin/pip freeze --all --exclude-editable | grep -vE "^(pip|wheel)=="; } > requirements.lock && \
	  .lock-venv/bin/pip install -q -c requirements.lock opensmile && \
	  { echo "# The opt-in openSMILE voice backend and what only it needs, resolved against requirements.lock by 'make lock'."; \
	    echo "# Non-commercial licence (LICENCES.toml): the dev/test venv installs it (infra/local/bootstrap.sh); the images do not."; \
	    .lock-venv/bin/pip freeze --all --exclude-editable | grep -vxFf requirements.lock | grep -vE "^(pip|wheel)=="; } > requirements-opensmile.lock && \
	  rm -rf .lock-venv

# Re-resolve requirements-infra-tools.in (checkov, hadolint: the tests/infra linters, in a venv of
# their own) into exact pins; bootstrap builds that venv from the lock.
lock-infra-tools:
	@tmp=$$(mktemp -d) && python3 -m venv "$$tmp" && \
	  "$$tmp/bin/pip" install -q --disable-pip-version-check -r requirements-infra-tools.in && \
	  { echo "# Exact pins for the infrastructure linters' venv, resolved from requirements-infra-tools.in by"; \
	    echo "# 'make lock-infra-tools'. infra/local/bootstrap.sh builds the venv; tests/infra runs the tools."; \
	    "$$tmp/bin/pip" freeze --exclude-editable; } > requirements-infra-tools.lock && \
	  rm -rf "$$tmp"

clean:
	rm -rf data/ .pytest_cache
