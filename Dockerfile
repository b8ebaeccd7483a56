# The Vigil image every component of the Helm chart (helm/vigil) runs: `vigil <command>`.
#   docker build -t vigil:0.1.0 .          (or `make image`: buildah, on a Debian base made here)
# Non-root (uid/gid 10001), made to run with a read-only root filesystem: nothing is written
# outside the volumes the chart mounts (/tmp, /var/lib/vigil/...).
#
# Two stages on the same Debian base (Python 3.11 from Debian, so the virtualenv built in the
# first stage runs unchanged in the second):
# - build: compilers and build tools (requirements-build.lock: mypy for mypyc, setuptools, wheel)
#   compile the pipeline's hot modules (app/native) and make Vigil's wheel, which carries them and
#   the package data (schemas/, topics.yaml as app/_data). /opt/venv gets the runtime packages
#   (requirements-runtime.lock only) and the wheel: a regular install, no source tree.
# - the image: Debian's python3, the virtualenv, a user. No compiler, no pip, no tests.

ARG BASE_IMAGE=docker.io/library/debian:bookworm-slim

FROM ${BASE_IMAGE} AS build
# Where pip's TLS trust comes from, for builds behind an intercepting proxy (a path inside the
# build, e.g. a mounted CA bundle); unset, pip uses its own.
ARG PIP_CERT
ENV DEBIAN_FRONTEND=noninteractive \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv python3-dev gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# The locked packages first (a layer that changes only with the lock files), as wheels both
# virtualenvs install from: /opt/venv (shipped) and /opt/build (build tools, not shipped).
COPY requirements-runtime.lock requirements-build.lock ./
RUN python3 -m venv /opt/build \
    && /opt/build/bin/pip wheel -q -w /wheels -r requirements-runtime.lock -r requirements-build.lock \
    && /opt/build/bin/pip install -q --no-index --find-links /wheels -r requirements-runtime.lock -r requirements-build.lock \
    && python3 -m venv /opt/venv \
    && /opt/venv/bin/pip install -q --no-index --find-links /wheels -r requirements-runtime.lock
COPY pyproject.toml setup.py topics.yaml ./
COPY schemas ./schemas
COPY app ./app
# Compile app/native's modules (mypyc), build the wheel with them and the data, install it.
# /opt/vigil/{schemas,topics.yaml} point into the package: the Jobs' default paths. The checks run
# outside /src, so they see the installed package rather than the sources.
RUN /opt/build/bin/python -m app.native.build \
    && /opt/build/bin/pip wheel -q --no-deps --no-build-isolation -w /dist . \
    && /opt/venv/bin/pip install -q --no-deps --no-index /dist/vigil-*.whl \
    && /opt/venv/bin/python -m compileall -q /opt/venv/lib \
    && /opt/venv/bin/pip uninstall -q -y pip setuptools \
    && cd / \
    && data=$(/opt/venv/bin/python -c 'import app.packaged as p; print(p.PACKAGED_DATA_DIR)') \
    && mkdir -p /opt/vigil \
    && ln -s "$data/schemas" /opt/vigil/schemas \
    && ln -s "$data/topics.yaml" /opt/vigil/topics.yaml \
    && /opt/venv/bin/python -c 'import app.pipeline.intake as m, app.native as n; assert n.is_compiled(m), n.native_status()' \
    && test -f /opt/vigil/topics.yaml && test -f /opt/vigil/schemas/vigil/Event.avsc

FROM ${BASE_IMAGE}
ARG VIGIL_UID=10001
ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 ca-certificates \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/* \
    && groupadd --system --gid ${VIGIL_UID} vigil \
    && useradd --system --uid ${VIGIL_UID} --gid vigil --home-dir /home/vigil --create-home \
       --shell /usr/sbin/nologin vigil \
    && mkdir -p /var/lib/vigil/state /var/lib/vigil/beacon-spool \
    && chown -R vigil:vigil /var/lib/vigil
COPY --from=build /opt/venv /opt/venv
COPY --from=build /opt/vigil /opt/vigil
# The built-in schemas (also what `vigil schemas register` registers) and topics.yaml (`vigil
# topics apply`) are the packaged ones. Example rules, executor.yaml and beacons.yaml are left out
# on purpose: commands would pick them up from the working directory; the chart mounts the real ones.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/home/vigil \
    VIGIL_TOPICS_FILE=/opt/vigil/topics.yaml \
    VIGIL_SCHEMAS_DIR=/opt/vigil/schemas \
    VIGIL_STATE_DIR=/var/lib/vigil/state
WORKDIR /home/vigil
USER ${VIGIL_UID}:${VIGIL_UID}
ENTRYPOINT ["vigil"]
CMD ["--help"]
