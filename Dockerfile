# cxguard sidecar image.
# faster-whisper (CTranslate2) on GPU needs CUDA 12 cuBLAS and cuDNN 9: use their runtime base.
# On a CPU-only host the same image runs the int8 CPU path.
# No Docker engine runs on the development machines, so this file is kept plain and documented:
#   docker build -t cxguard .
#   docker run --gpus all -p 8765:8765 -e CXGUARD_TWILIO_AUTH_TOKEN=... cxguard
FROM nvidia/cuda:12.4.1-cudnn-runtime-ubuntu22.04

ENV DEBIAN_FRONTEND=noninteractive PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3.11 python3.11-venv python3-pip ca-certificates \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY pyproject.toml README.md ./
COPY cxguard ./cxguard
COPY models ./models
COPY configs ./configs
RUN python3.11 -m venv /opt/venv && /opt/venv/bin/pip install --upgrade pip \
 && /opt/venv/bin/pip install ".[postgres]"

ENV PATH=/opt/venv/bin:$PATH CXGUARD_MODELS_DIR=/app/models
EXPOSE 8765
USER nobody
CMD ["cxguard", "serve", "--config", "/app/configs/server.yaml", "--host", "0.0.0.0"]
