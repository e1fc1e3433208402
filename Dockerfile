# The msgstate workers, the HTTP API and the CLI: one image, the command picks the process.
FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    MSGSTATE_STACK_DIR=/var/lib/msgstate
WORKDIR /app
COPY pyproject.toml README.md ./
COPY schemas schemas
COPY streams streams
COPY workers workers
COPY bench bench
RUN pip install . \
    # faust keeps a data folder under MSGSTATE_STACK_DIR; the processes run as nobody.
    && mkdir -p /var/lib/msgstate && chown nobody /var/lib/msgstate
USER nobody
# 8080: `msgstate http`; 9102: `msgstate analytics` metrics.
EXPOSE 8080 9102
ENTRYPOINT []
CMD ["msgstate", "worker"]
