# The assay image: registry, workers and both verification backends (llama.cpp via
# llama-cpp-python, built here for a portable CPU baseline; MLX's CPU build on Linux).
FROM python:3.11-slim AS build
RUN apt-get update && apt-get install -y --no-install-recommends build-essential cmake \
        ninja-build && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml README.md ./
COPY registry ./registry
COPY verifier ./verifier
COPY worker ./worker
COPY migrations ./migrations
# GGML_NATIVE=OFF: the image may run on an older CPU than the one that built it.
ENV CMAKE_ARGS="-DGGML_NATIVE=OFF"
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
RUN apt-get update && apt-get install -y --no-install-recommends libgomp1 \
        && rm -rf /var/lib/apt/lists/*
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
EXPOSE 5000
CMD ["assay", "serve", "--host", "0.0.0.0", "--port", "5000"]
