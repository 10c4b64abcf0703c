# Vigil: consume predictions and telemetry from Kafka, publish alerts, serve Prometheus metrics.
#   docker build -t vigil .
#   docker run --rm -e VIGIL_BOOTSTRAP_SERVERS=broker:9092 -p 9108:9108 vigil
# The image reads /etc/vigil/vigil.toml (mount your own; deploy/vigil.toml is an example);
# VIGIL_* environment variables override the file.

# --- build: install Vigil and its dependencies into a virtualenv -------------------------
FROM python:3.11-slim AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/vigil
ENV PATH=/opt/vigil/bin:$PATH

WORKDIR /src
COPY pyproject.toml README.md ./
COPY stream/ stream/
COPY detectors/ detectors/
COPY updaters/ updaters/
RUN pip install --no-cache-dir .
# the adaptive detector's compiled kernel, built once here instead of at every start
ENV NUMBA_CACHE_DIR=/opt/vigil/numba-cache
RUN python -c 'from vigil.detectors.adaptive_kernel import warm_up; warm_up()'

# --- runtime: the virtualenv only, no sources or build leftovers, as a non-root user -----
FROM python:3.11-slim

ENV PATH=/opt/vigil/bin:$PATH \
    NUMBA_CACHE_DIR=/opt/vigil/numba-cache \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    VIGIL_METRICS_HOST=0.0.0.0

RUN groupadd --system --gid 10001 vigil \
    && useradd --system --uid 10001 --gid vigil --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin vigil \
    && mkdir -p /etc/vigil

COPY --from=build /opt/vigil /opt/vigil
# numba uses a cache directory only where it can write: the service's user owns this one
RUN chown -R 10001:10001 /opt/vigil/numba-cache
COPY deploy/vigil.toml /etc/vigil/vigil.toml

USER 10001:10001
# `vigil run` writes no files; a writable working directory keeps any stray one harmless.
WORKDIR /tmp

EXPOSE 9108

# slim has no curl: ask /healthz with the standard library (urlopen raises on a non-2xx answer).
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('VIGIL_METRICS_PORT', '9108') + '/healthz', timeout=3)"]

ENTRYPOINT ["vigil"]
CMD ["run", "-c", "/etc/vigil/vigil.toml"]
