# The msgstate workers, the HTTP API and the CLI: one image, the command picks the process.

# Build stage: the wheel, with the compiled engine (native/, Rust) built in release mode.
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 \
    PATH=/root/.cargo/bin:$PATH
RUN apt-get update \
    && apt-get install -y --no-install-recommends curl ca-certificates gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/* \
    && curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y -q --profile minimal
WORKDIR /src
COPY pyproject.toml README.md ./
COPY native native
COPY schemas schemas
COPY streams streams
COPY workers workers
COPY bench bench
COPY msgstate msgstate
RUN pip wheel --no-deps --wheel-dir /wheels .

# The image: Python and the wheel only, no toolchain.
FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    MSGSTATE_STACK_DIR=/var/lib/msgstate
COPY --from=build /wheels /wheels
RUN pip install /wheels/*.whl && rm -rf /wheels \
    # faust keeps a data folder under MSGSTATE_STACK_DIR; the processes run as nobody.
    && mkdir -p /var/lib/msgstate && chown nobody /var/lib/msgstate
USER nobody
# 8080: `msgstate http`; 9102: `msgstate analytics` metrics.
EXPOSE 8080 9102
ENTRYPOINT []
CMD ["msgstate", "worker"]
