"""The handler runtime image, localhost/aifn/aifn-handler:0.1.0, built from images/handler/Dockerfile without Docker.

Built exactly as the operator image (support.cluster.operator_image, which says how and why): buildah
in this project's own storage, the same local base `localhost/aifn/python:3.11-slim-bookworm`
(debootstrap bookworm + Debian's Python 3.11) passed as `--build-arg PYTHON_IMAGE`, RUN steps with no
network, wheels downloaded on the host by pip for images/handler/requirements.txt (plus the build
backend) into ~/.cache/aifn/wheels/handler-image-<hash>/, and the result pushed as an OCI archive
~/.cache/aifn/images/localhost_aifn_aifn-handler-0.1.0-<hash>.tar, keyed by a hash of its inputs
(the Dockerfile, the requirements, pyproject.toml, README.md, operator/ sources, the wheels, the
base's recipe) and rebuilt only when those change.

One difference: images/handler/Dockerfile has no wheelhouse COPY (the operator's Dockerfile copies
hack/wheelhouse/), so the wheels and a pip.conf saying `no-index`, `find-links = /tmp/wheels` are
bind-mounted into its RUN steps (`buildah bud --volume`); none of their content is committed (only the
empty mount targets buildah leaves in the final stage's RUN layer: a 0-byte /etc/pip.conf, an empty
/tmp/wheels/, harmless in an image without pip).

Knative Revisions name it `dev.local/aifn/aifn-handler:0.1.0` (support.cluster.stack.revision_image):
import the archive into a node with support.cluster.images.import_archive(archive, HANDLER_IMAGE, socket),
then support.cluster.stack.tag_for_revisions(HANDLER_IMAGE, socket), and give the operator
`--set operator.handlerImage=dev.local/aifn/aifn-handler:0.1.0` (AIFN_HANDLER_IMAGE).
"""

from __future__ import annotations

import os
from pathlib import Path

from .operator_image import (ROOT, BuildError, Log, Recipe, _image_config, _run, _stderr, build_image_archive,
                             throwaway_containerd)

HANDLER_IMAGE = "localhost/aifn/aifn-handler:0.1.0"
HANDLER_UID = 1000  # the Dockerfile's USER, and the operator's HANDLER_IMAGE_UID (runAsUser)
LOCK = ROOT / "images" / "handler" / "requirements.txt"

HANDLER = Recipe(
    image=HANDLER_IMAGE,
    what="handler image",
    dockerfile="images/handler/Dockerfile",
    lock=LOCK,
    # What the Dockerfile's COPY lines take. The repository's .dockerignore is the operator's (it lets
    # only the operator's files through), so it is not part of this context.
    context_files=("images/handler/Dockerfile", "images/handler/requirements.txt", "pyproject.toml", "README.md"),
    context_trees=("operator",),
    build_stage_cache="localhost/aifn/aifn-handler:build-stage",
    wheels_cache="handler-image",
    wheelhouse_in_context=None,
)


def handler_image_archive(log: Log = _stderr, *, rebuild: bool = False) -> Path:
    """The OCI archive of localhost/aifn/aifn-handler:0.1.0, built with buildah when its inputs changed."""
    return build_image_archive(HANDLER, log, rebuild=rebuild)


def verify_archive(archive: Path, log: Log = _stderr) -> str:
    """Import `archive` into a throwaway containerd and run the image once as the renderer runs it.

    Checks the name `ctr images import` gives it, the entrypoint and user of its config, then runs
    it as its own user (1000) with a read-only root file system (no /tmp: the renderer mounts none for the
    handler): the runtime's modules import, the handler directory exists and no pip is importable.
    Returns what the container printed.
    """
    with throwaway_containerd() as ctr:
        _run([*ctr, "images", "import", str(archive)], log, quiet=True)
        listed = _run([*ctr, "images", "list", "--quiet"], log, quiet=True).stdout.split()
        if HANDLER_IMAGE not in listed:
            raise BuildError(f"ctr images import named it {listed}, not {HANDLER_IMAGE}")
        config = _image_config(archive)
        expected = ["python", "-m", "aifunction_operator.handler"]
        if config.get("Entrypoint") != expected or config.get("User") != f"{HANDLER_UID}:{HANDLER_UID}":
            raise BuildError(f"image config: Entrypoint {config.get('Entrypoint')}, User {config.get('User')}")
        probe = ("set -e; echo uid=$(id -u) gid=$(id -g); test -d /opt/aifn/handler; "
                 "AIFN_HANDLER_ENTRYPOINT=probe:handler AIFN_MODEL_NAME=probe python -c "
                 "'import aifunction_operator.handler.kserve_server, aifunction_operator.handler.__main__, "
                 "kserve, tritonclient.http, numpy; print(\"kserve\", kserve.__version__ if hasattr(kserve, \"__version__\") else \"?\")'; "
                 "if python -c 'import pip' 2>/dev/null; then echo 'pip is importable'; exit 1; fi; "
                 "python --version; echo entrypoint-ok")
        result = _run([*ctr, "run", "--rm", "--read-only", HANDLER_IMAGE, f"aifn-verify-handler-{os.getpid()}", "sh", "-c", probe],
                      log, quiet=True, timeout=120)
        if f"uid={HANDLER_UID} gid={HANDLER_UID}" not in result.stdout or "entrypoint-ok" not in result.stdout:
            raise BuildError(f"the image's probe said:\n{result.stdout}{result.stderr}")
        return result.stdout
