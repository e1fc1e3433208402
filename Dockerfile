# The msgstate workers and CLI.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY schemas schemas
COPY streams streams
COPY workers workers
COPY bench bench
RUN pip install --no-cache-dir .
USER nobody
ENTRYPOINT []
CMD ["msgstate", "worker"]
