# One image for the injector (webhook + broker) and the init container that fetches secrets.
#
#   docker build -t REGISTRY/sakura-secrets-injector:0.1.0 .
#
# pip installs exactly the pins and sha256 hashes of requirements.txt (scripts/lock makes it),
# wheels only, so no compiler is needed and linux/amd64 and linux/arm64 build alike. Build args,
# the only two (docs/image.md):
#   BASE             an image with Python 3.11 and its venv module (Debian-like; /bin/sh)
#   EXTRA_CA_CERTS   PEM text of CA certificates pip must also trust, for networks that intercept
#                    TLS: --build-arg EXTRA_CA_CERTS="$(cat corp-ca.pem)". Used in the build stage
#                    only, which the final image does not inherit: not in its files nor history.
# Proxies: Docker's predefined build args HTTP_PROXY, HTTPS_PROXY and NO_PROXY.
ARG BASE=python:3.11-slim-bookworm

FROM ${BASE} AS build
# lets the e2e harness remove its own leftover build stages: docker image prune --filter label=...
LABEL io.sakura-secrets.stage=build
ARG EXTRA_CA_CERTS=""
COPY requirements.txt /src/
# the dependencies first: a source change does not download them again
RUN set -eu; \
    python3 -m venv /opt/venv; \
    if [ -n "$EXTRA_CA_CERTS" ]; then \
      /opt/venv/bin/python -c 'import pip._vendor.certifi as c; print(open(c.where()).read())' \
        > /tmp/ca.pem; \
      printf '%s\n' "$EXTRA_CA_CERTS" >> /tmp/ca.pem; \
      export PIP_CERT=/tmp/ca.pem; \
    fi; \
    /opt/venv/bin/python -m pip install --no-cache-dir --disable-pip-version-check \
      --require-hashes --only-binary :all: -r /src/requirements.txt; \
    rm -f /tmp/ca.pem
COPY pyproject.toml README.md LICENSE /src/
COPY contract/ /src/contract/
COPY sakura/ /src/sakura/
COPY injector/ /src/injector/
COPY sidecar/ /src/sidecar/
# (not emulator/: the emulator and the demo are for tests and the checkout, never the image)
# The project itself, built by the locked setuptools; nothing more from the index. Then the
# kubernetes package's asyncio client goes (68 of the venv's 191 MB): the injector uses the
# synchronous one only (tests/unit/test_release.py checks no module imports kubernetes.aio), and the
# imports below fail the build if that ever changes.
RUN set -eu; \
    /opt/venv/bin/python -m pip install --no-cache-dir --disable-pip-version-check \
      --no-index --no-deps --no-build-isolation /src; \
    /opt/venv/bin/python -m pip check; \
    /opt/venv/bin/python -m pip uninstall -y -q pip setuptools; \
    rm -r /opt/venv/lib/python3.*/site-packages/kubernetes/aio; \
    /opt/venv/bin/python -m compileall -q /opt/venv/lib; \
    /opt/venv/bin/python -c 'import injector.operations.cli, injector.kube, injector.operations.wiring, \
      injector.operations.certs_bootstrap, sidecar.__main__, kubernetes.client'; \
    /opt/venv/bin/sakura-secrets-injector --version

FROM ${BASE}
# The version is pyproject.toml's; tests/unit/test_release.py keeps the two equal.
LABEL org.opencontainers.image.title="sakura-secrets-injector" \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.description="Sakura Cloud Secret Manager secrets into Kubernetes pods as tmpfs files"
# Only the finished virtual environment: no pip, no lock, no CA of the build, no compiler.
COPY --from=build /opt/venv /opt/venv
RUN echo 'nonroot:x:65532:65532:nonroot:/nonexistent:/usr/sbin/nologin' >> /etc/passwd \
 && echo 'nonroot:x:65532:' >> /etc/group
ENV PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER 65532:65532
WORKDIR /
CMD ["sakura-secrets-injector", "--help"]
