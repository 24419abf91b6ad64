# cxguard sidecar image.
#
# GPU (default): faster-whisper (CTranslate2) needs CUDA 12 cuBLAS and cuDNN 9, so the base is
# NVIDIA's CUDA 12 + cuDNN 9 runtime; on a host without a GPU the same image runs the int8 CPU
# path. CPU-only variant (about 3 GB smaller): --build-arg BASE=ubuntu:22.04.
#   docker build -t cxguard .
#   docker run --gpus all -p 8765:8765 -v cxguard-data:/var/lib/cxguard \
#     -e CXGUARD_TWILIO_AUTH_TOKEN=... -e CXGUARD_PUBLIC_URL=wss://guard.example.com cxguard
# With PostgreSQL and Redis: deploy/docker-compose.yml. Details: docs/deploy.md.
#
# Runs as an unprivileged user (10001) on a read-only installation (/opt/cxguard, owned by
# root); all it writes goes to the data volume /var/lib/cxguard (its working directory, so a
# relative path lands there too). No Docker engine runs on the development machines:
# tests/test_deploy.py parses this file and runs its CMD and HEALTHCHECK that way.
ARG BASE=nvidia/cuda:12.4.1-cudnn-runtime-ubuntu22.04

FROM ${BASE} AS build
ENV DEBIAN_FRONTEND=noninteractive PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3.11 python3.11-venv ca-certificates \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY cxguard ./cxguard
COPY models ./models
RUN python3.11 -m venv /opt/cxguard \
 && /opt/cxguard/bin/pip install ".[postgres]" \
 && /opt/cxguard/bin/python -m compileall -q /opt/cxguard

FROM ${BASE}
ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3.11 ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && if [ -d /usr/local/cuda ]; then \
      ldconfig -p | grep -q 'libcudnn\.so\.9' && ldconfig -p | grep -q 'libcublas\.so\.12' \
      || { echo "base image lacks cuDNN 9 / cuBLAS 12" >&2; exit 1; }; \
    fi \
 && groupadd --system --gid 10001 cxguard \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/cxguard \
      --shell /usr/sbin/nologin cxguard \
 && install -d -o 10001 -g 10001 -m 0750 /var/lib/cxguard
COPY --from=build /opt/cxguard /opt/cxguard
COPY deploy/container.yaml /etc/cxguard/cxguard.yaml

ENV PATH=/opt/cxguard/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/var/lib/cxguard \
    CXGUARD_MODELS_DIR=/opt/cxguard/share/cxguard/models
WORKDIR /var/lib/cxguard
VOLUME ["/var/lib/cxguard"]
USER 10001:10001
EXPOSE 8765
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8765/healthz', timeout=4).status != 200)"]
STOPSIGNAL SIGTERM
CMD ["cxguard", "serve", "--config", "/etc/cxguard/cxguard.yaml"]
