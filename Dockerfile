# syntax=docker/dockerfile:1
# The StrataRouter Runtime operator image: `docker build -t stratarouter-operator .` (or `make images`).
# Stage 1 builds the wheel and installs it with the [operator] extra into a virtualenv; stage 2 copies
# only that virtualenv into a slim image that runs as an unprivileged user.
ARG PYTHON_IMAGE=python:3.12-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m pip install "build>=1.2"
# Only what the wheel is made of, so unrelated changes keep the cache.
COPY pyproject.toml README.md ./
COPY operator/ operator/
RUN python -m build --wheel --outdir /dist .
# Install from the wheel (not the source tree): the image holds exactly what users get from the wheel.
RUN python -m venv /opt/venv \
 && wheel=$(ls /dist/stratarouter_runtime-*.whl) \
 && /opt/venv/bin/pip install "${wheel}[operator]" \
 && /opt/venv/bin/stratarouter --help >/dev/null

FROM ${PYTHON_IMAGE}
# A named user (kopf and getpass look the user up) with the uid/gid the chart's securityContext uses.
RUN groupadd --system --gid 10001 strata \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin strata
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER 10001:10001
# Checkpoint API, /healthz and /metrics (STRATA_API_PORT).
EXPOSE 8080
ENTRYPOINT ["stratarouter"]
CMD ["operator"]
