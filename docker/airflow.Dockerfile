# syntax=docker/dockerfile:1
# Airflow 3 with the callaffect project and its DAGs. One image for every Airflow component
# (api-server, scheduler, dag-processor, triggerer, workers); the command picks which.
#   docker build -f docker/airflow.Dockerfile -t callaffect-airflow .     (from the repo root)
# Not built here (no Docker engine on the development machine): see docker/README.md.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
#checkov:skip=CKV_DOCKER_7:the tag is in ARG PYTHON_IMAGE (python:3.11-slim-bookworm, or a digest); checkov does not resolve build args

# --- build: a venv with the exact pins, then the project --------------------------------------
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
COPY requirements.lock /tmp/requirements.lock
RUN pip install "pip==${PIP_VERSION}" "wheel==${WHEEL_VERSION}" \
 && pip install -r /tmp/requirements.lock
# Editable, from /opt/callaffect: pipeline/jobs/marts.py finds sql/ next to the package
# (pipeline/../sql), which a plain wheel install would not carry.
COPY pyproject.toml README.md /opt/callaffect/
COPY pipeline /opt/callaffect/pipeline
COPY sql /opt/callaffect/sql
RUN pip install --no-deps --no-build-isolation -e /opt/callaffect \
 && pip check

# --- runtime ---------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE}
ENV PIP_NO_CACHE_DIR=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH \
    AIRFLOW_HOME=/opt/airflow \
    AIRFLOW__CORE__DAGS_FOLDER=/opt/airflow/dags \
    AIRFLOW__CORE__LOAD_EXAMPLES=False \
    HF_HUB_OFFLINE=1 \
    PYANNOTE_METRICS_ENABLED=false
# FFmpeg's shared libraries for torchcodec (PyAV brings its own).
RUN apt-get update \
 && apt-get install -y --no-install-recommends ffmpeg \
 && rm -rf /var/lib/apt/lists/*
# uid 50000, group 0: the convention of the official Airflow image and its Helm chart.
RUN useradd --uid 50000 --gid 0 --home-dir /opt/airflow --create-home --shell /bin/bash airflow
COPY --from=build /opt/venv /opt/venv
COPY --from=build /opt/callaffect /opt/callaffect
COPY --chown=airflow:0 dags /opt/airflow/dags
# Numeric (= airflow): Kubernetes' runAsNonRoot can only verify a numeric user.
USER 50000
WORKDIR /opt/airflow
EXPOSE 8080
# No HEALTHCHECK here: the right probe depends on the component this container runs
# (docker/README.md lists them; compose.local.yaml uses the api-server's).
#checkov:skip=CKV_DOCKER_2:one image, several Airflow components, each with its own probe (docker/README.md)
ENTRYPOINT ["airflow"]
CMD ["api-server"]
