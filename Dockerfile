# syntax=docker/dockerfile:1
# The aifn operator image: `aifn operator` in a virtual environment on a slim Python, run as a
# non-root user. Build: `make images` (docker build -t aifunction-operator:<version> .), or without
# Docker or a registry: `make operator-image` (hack/build_images.py: buildah, a local Debian Python
# base passed as PYTHON_IMAGE, and wheels downloaded on the host into the context's hack/wheelhouse/).
# The base is pinned by tag; pin it by digest too when publishing (PYTHON_IMAGE=python:...@sha256:...).
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

# --- build: the package and its pinned dependencies into /opt/aifn ----------------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/aifn
# A wheelhouse, when the context's hack/wheelhouse/ holds wheels (hack/build_images.py puts there the
# lock's and the build backend's, downloaded on the host, for machines whose build containers cannot
# reach an index): every pip below then installs from it only. Empty (a plain `docker build .`), pip
# uses the index. This pip.conf stays in this stage; the final image takes only /opt/aifn.
COPY hack/wheelhouse/ /tmp/wheels/
RUN if ls /tmp/wheels/*.whl >/dev/null 2>&1; then \
      printf '[global]\nno-index = true\nfind-links = /tmp/wheels\n' >/etc/pip.conf; fi
# Dependencies first (a layer that changes only with the lock), exactly as pinned.
COPY hack/operator-image-requirements.txt /tmp/requirements.txt
RUN /opt/aifn/bin/pip install --no-deps -r /tmp/requirements.txt
# The package itself, without dev or local-serving extras.
COPY pyproject.toml README.md /src/
COPY operator /src/operator
RUN /opt/aifn/bin/pip install --no-deps /src \
 && /opt/aifn/bin/pip check \
 && /opt/aifn/bin/aifn operator --help >/dev/null \
 && /opt/aifn/bin/pip uninstall --yes pip

# --- final: the venv on a clean base, no pip, no build tools --------------------------------
FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="aifunction-operator" \
      org.opencontainers.image.description="aifn operator: AIFunction -> Knative Service running NVIDIA Triton" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN rm -rf /usr/local/lib/python3.11/site-packages/pip /usr/local/lib/python3.11/site-packages/pip-* \
           /usr/local/bin/pip /usr/local/bin/pip3 /usr/local/bin/pip3.11
COPY --from=build /opt/aifn /opt/aifn
ENV PATH=/opt/aifn/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# The chart runs it with readOnlyRootFilesystem and an emptyDir at /tmp.
USER 65532:65532
EXPOSE 8080 9090
ENTRYPOINT ["aifn", "operator"]
