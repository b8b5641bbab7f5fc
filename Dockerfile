# The assay image: registry, workers and both verification backends (llama.cpp via
# llama-cpp-python, built here for a portable CPU baseline; MLX's CPU build on Linux).
#   docker build -t assay:local .
# BASE: any image with Python 3.11+ where `pip` and `python` are on PATH and apt-get works
# (the official python:3.11-slim by default).
ARG BASE=python:3.11-slim

FROM ${BASE} AS build
RUN apt-get update && apt-get install -y --no-install-recommends build-essential cmake \
        ninja-build && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml README.md ./
COPY client ./client
COPY registry ./registry
COPY verifier ./verifier
COPY worker ./worker
COPY migrations ./migrations
# GGML_NATIVE=OFF: the image may run on an older CPU than the one that built it.
ENV CMAKE_ARGS="-DGGML_NATIVE=OFF"
# llama-cpp-python has no Linux wheel on PyPI: pip compiles llama.cpp (~12 minutes on two
# cores). The cache mount keeps pip's wheel cache between builds, so only the first build
# on a machine pays for it. PIP_FIND_LINKS (pip reads it) names ready wheels to prefer: a
# URL (a wheel server) or a directory mounted into the build
# (`buildah bud -v DIR:/wheelhouse:ro --build-arg PIP_FIND_LINKS=/wheelhouse`).
ARG PIP_FIND_LINKS
RUN --mount=type=cache,target=/root/.cache/pip pip wheel --wheel-dir /wheels .

FROM ${BASE}
RUN apt-get update && apt-get install -y --no-install-recommends libgomp1 \
        && rm -rf /var/lib/apt/lists/*
# Installed from the build stage's wheels through a bind mount: they never become a layer.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links /wheels /wheels/*.whl
EXPOSE 5000
CMD ["assay", "serve", "--host", "0.0.0.0", "--port", "5000"]
