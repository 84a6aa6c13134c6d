# fluxai API and worker image. One file, two variants:
#   CPU  (default): docker build -t fluxai .
#   CUDA          : docker build -t fluxai:cuda --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu124 .
# CUDA wheels bring their own CUDA runtime; the host needs the NVIDIA driver and container toolkit.
FROM python:3.11-slim

ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1

WORKDIR /app
# torch first, from the chosen index, so the heavy layer is cached across code changes.
RUN pip install --index-url "${TORCH_INDEX}" "torch>=2.4"
COPY pyproject.toml README.md* ./
COPY fluxai ./fluxai
RUN pip install ".[serve]"

# Jobs and images of the single-process mode live here; mount a volume to keep them.
RUN useradd --create-home --uid 1000 fluxai && mkdir -p /data && chown fluxai /data
USER fluxai
VOLUME ["/data"]
EXPOSE 8000

HEALTHCHECK --interval=15s --timeout=3s --start-period=60s \
  CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz')" || exit 1

# Single process (in-process worker). compose.yaml runs `fluxai serve --broker` + `fluxai worker`.
CMD ["fluxai", "serve", "--host", "0.0.0.0", "--port", "8000", "--data-dir", "/data"]
