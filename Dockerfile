# The assay registry image (first version: registry core; the verification backends,
# llama-cpp-python and mlx-lm, are added with the worker).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY registry ./registry
COPY verifier ./verifier
COPY worker ./worker
COPY migrations ./migrations
RUN pip install --no-cache-dir .
EXPOSE 5000
CMD ["assay", "serve", "--host", "0.0.0.0", "--port", "5000"]
