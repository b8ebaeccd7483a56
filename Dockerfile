# The Vigil image every component of the Helm chart (helm/vigil) runs: `vigil <command>`.
#   docker build -t vigil:0.1.0 .
# Non-root (uid/gid 10001), made to run with a read-only root filesystem: nothing is written
# outside the volumes the chart mounts (/tmp, /var/lib/vigil/...).
#
# The package is installed in editable mode from /opt/vigil, the same path in both stages: Vigil
# finds its built-in Avro schemas at <source root>/schemas (app/model/schemas.py), which a regular
# wheel install into site-packages would not have.

FROM python:3.11-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
# Dependencies first (exact versions; a layer that changes only with the lock file).
COPY requirements.lock /tmp/requirements.lock
RUN pip install -r /tmp/requirements.lock
WORKDIR /opt/vigil
COPY pyproject.toml ./
COPY app ./app
# gcc only in this stage: it compiles the pipeline's hot modules (app/native) into app/_native.
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
RUN pip install --no-deps -e . \
    && python -m app.native.build \
    && python -m compileall -q app

FROM python:3.11-slim
ARG VIGIL_UID=10001
RUN groupadd --system --gid ${VIGIL_UID} vigil \
    && useradd --system --uid ${VIGIL_UID} --gid vigil --home-dir /home/vigil --create-home \
       --shell /usr/sbin/nologin vigil \
    && mkdir -p /var/lib/vigil/state /var/lib/vigil/beacon-spool \
    && chown -R vigil:vigil /var/lib/vigil
COPY --from=build /opt/venv /opt/venv
COPY --from=build /opt/vigil /opt/vigil
WORKDIR /opt/vigil
# Data files: the built-in schemas (also what `vigil schemas register` registers) and topics.yaml
# (`vigil topics apply`). The example rules, executor.yaml and beacons.yaml are left out on
# purpose: commands would pick them up from the working directory; the chart mounts the real ones.
COPY schemas ./schemas
COPY topics.yaml ./
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/home/vigil \
    VIGIL_TOPICS_FILE=/opt/vigil/topics.yaml \
    VIGIL_SCHEMAS_DIR=/opt/vigil/schemas \
    VIGIL_STATE_DIR=/var/lib/vigil/state
USER ${VIGIL_UID}:${VIGIL_UID}
ENTRYPOINT ["vigil"]
CMD ["--help"]
