# syntax=docker/dockerfile:1
# The StrataRouter Runtime operator image: `docker build -t stratarouter-operator:dev .` (`make images-docker`).
# It describes the image that `make images` (hack/build-images.sh) builds without Docker, which is the one
# the tests use: Debian bookworm with Debian's python3, the wheel with its [operator] extra installed under
# /opt/site, user 10001, `python3 -m stratarouter_runtime.cli operator`. Our machines have no Docker, so this
# file is not built by any test: keep it in step with the script by hand.
FROM debian:bookworm-slim AS base
# python-is-python3: the chart's init container runs `python -c ...`. A named user (kopf and getpass look
# the user up) with the uid/gid the chart's securityContext uses.
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python-is-python3 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 strata \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin strata

FROM base AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN apt-get update && apt-get install -y --no-install-recommends python3-pip
WORKDIR /src
# Only what the wheel is made of, so unrelated changes keep the cache.
COPY pyproject.toml README.md ./
COPY operator/ operator/
# Install from the wheel (not the source tree): the image holds exactly what users get from the wheel.
# pip compiles the bytecode (the chart's root filesystem is read-only).
RUN python3 -m pip wheel --no-deps --wheel-dir /dist . \
 && wheel=$(ls /dist/stratarouter_runtime-*.whl) \
 && python3 -m pip install --only-binary :all: --target /opt/site "${wheel}[operator]"

FROM base
COPY --from=build /opt/site /opt/site
ENV PATH=/opt/site/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYTHONPATH=/opt/site \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER 10001:10001
WORKDIR /
# Checkpoint API, /healthz and /metrics (STRATA_API_PORT).
EXPOSE 8080
ENTRYPOINT ["python3", "-m", "stratarouter_runtime.cli"]
CMD ["operator"]
