# One image for the injector (webhook + broker) and the init container that fetches secrets.
#
# The build never reaches a package registry: install wheels built on the host first,
#   pip wheel '.[injector]' -w wheels/
#   docker build --build-arg BASE=local/python-base:bookworm -t sakura-secrets-injector:dev .
# BASE is any Debian-like image with python3 (>= 3.11) and the venv module.
ARG BASE=python:3.11-slim-bookworm

FROM ${BASE} AS build
# lets the e2e harness remove its own leftover build stages: docker image prune --filter label=...
LABEL io.sakura-secrets.stage=build
COPY wheels/ /wheels/
RUN python3 -m venv /opt/venv \
 && /opt/venv/bin/python -m pip install --no-cache-dir --no-index --find-links /wheels \
      'sakura-secrets-injector[injector]' \
 && /opt/venv/bin/python -m pip uninstall -y -q pip setuptools wheel \
 && /opt/venv/bin/python -m compileall -q /opt/venv/lib \
 && /opt/venv/bin/python -c "import sidecar, injector, plan, sakura"

FROM ${BASE}
# Only the finished virtual environment: no pip, no wheels, no compiler.
COPY --from=build /opt/venv /opt/venv
RUN echo 'nonroot:x:65532:65532:nonroot:/nonexistent:/usr/sbin/nologin' >> /etc/passwd \
 && echo 'nonroot:x:65532:' >> /etc/group
ENV PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER 65532:65532
WORKDIR /
CMD ["sakura-secrets-injector", "--help"]
