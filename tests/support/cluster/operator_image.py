"""The operator image, localhost/aifn/aifunction-operator:dev, built from the project's Dockerfile without Docker.

buildah (Debian's package) builds the Dockerfile without a daemon, into its own storage under
~/.cache/aifn/buildah/ (the overlay driver, `vfs` where the kernel has no overlayfs, or
AIFN_BUILDAH_DRIVER; RUN steps in runc with no network, or AIFN_BUILDAH_ISOLATION=chroot where runc
cannot run them). What this machine lacks is made here:

- **The base.** The Dockerfile's `python:3.11.14-slim-bookworm` lives on Docker Hub, unreachable here.
  A Debian bookworm root file system from `debootstrap --variant=minbase` with Debian's Python 3.11
  (python3, python3-venv, python-is-python3, ca-certificates, netbase, tzdata), bookworm-updates and
  bookworm-security applied, documentation, man pages, locales and apt lists removed, is committed as
  `localhost/aifn/python:3.11-slim-bookworm` and passed as `--build-arg PYTHON_IMAGE`. It is honestly
  named: Debian's CPython is 3.11.2 (with Debian's security patches), not python.org's 3.11.14, so it
  does not pose as the Docker Hub image. The Dockerfile's default stays that image for `docker build`.
- **Wheels.** pip inside a build container cannot reach PyPI here (the TLS in between is trusted only
  by this host's configuration, which must not be copied into images). pip on the host downloads the
  lock (hack/operator-image-requirements.txt) and the build backend for CPython 3.11 on glibc 2.36
  (bookworm) into a wheelhouse; the build context gets it as hack/wheelhouse/, and the Dockerfile then
  installs from it only (`no-index`).
- **No registry.** The image is pushed as an OCI archive (`buildah push ... oci-archive:`), the form
  `ctr images import` reads (support.cluster.images.import_archive), to
  ~/.cache/aifn/images/localhost_aifn_aifunction-operator-dev-<hash>.tar.

Cached like the tools: the archive's name holds a hash of its inputs (Dockerfile, .dockerignore, the
lock, pyproject.toml, README.md, operator/ sources, the wheels, the base's recipe), so an unchanged tree
returns the archive without starting buildah, and a change rebuilds (buildah's `--layers` cache keeps
the dependency layer when only the sources changed). The base and the wheelhouse are cached under
their own recipe hashes. Needs root (debootstrap, buildah's storage) and Debian's `buildah`,
`debootstrap` (and `containerd` for `verify_archive`).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from .images import file_sha256

ROOT = Path(__file__).resolve().parents[3]
CACHE = Path(os.environ.get("AIFN_CACHE", Path.home() / ".cache" / "aifn"))
IMAGES = Path(os.environ.get("AIFN_IMAGE_CACHE", CACHE / "images"))  # as support.cluster.images
OPERATOR_IMAGE = "localhost/aifn/aifunction-operator:dev"
BASE_IMAGE = "localhost/aifn/python:3.11-slim-bookworm"
BUILD_STAGE_CACHE = "localhost/aifn/aifunction-operator:build-stage"  # only in buildah's storage, as a cache
LOCK = ROOT / "hack" / "operator-image-requirements.txt"

# What the Dockerfile's COPY lines take from the context (as .dockerignore lets through), relative to ROOT.
CONTEXT_FILES = ("Dockerfile", ".dockerignore", "pyproject.toml", "README.md", "hack/operator-image-requirements.txt")
CONTEXT_TREES = ("operator",)
CONTEXT_SKIP = ("__pycache__", "*.pyc", "*.egg-info")
WHEELHOUSE_IN_CONTEXT = "hack/wheelhouse"

# pyproject's [build-system] requires, pinned: pip builds the package from /src in an isolated
# environment that gets these from the wheelhouse (they do not end up in the image's venv).
BUILD_REQUIREMENTS = ("setuptools==84.2.1", "wheel==0.48.0", "packaging==26.4")  # wheel needs packaging

DEBIAN_SUITE = "bookworm"
DEBIAN_MIRROR = os.environ.get("AIFN_DEBIAN_MIRROR", "http://deb.debian.org/debian")
DEBIAN_SECURITY_MIRROR = os.environ.get("AIFN_DEBIAN_SECURITY_MIRROR", "http://deb.debian.org/debian-security")
BASE_PACKAGES = ("python3", "python3-venv", "python-is-python3", "ca-certificates", "netbase", "tzdata")
BASE_RECIPE_VERSION = "1"  # bump when _build_base changes what it makes
GLIBC = "2_36"  # bookworm's

Log = Callable[[str], None]


@dataclass(frozen=True)
class Recipe:
    """What one image built from a Dockerfile of this repository takes (the operator's, the handler's)."""

    image: str  # the name it is committed and archived as
    what: str  # in log lines
    dockerfile: str  # relative to ROOT
    lock: Path  # the pinned requirements pip downloads wheels for
    context_files: tuple[str, ...]  # relative to ROOT, as the Dockerfile's COPY lines take them
    context_trees: tuple[str, ...]
    build_stage_cache: str  # the build stage's tag in buildah's storage (its layers: the next build's cache)
    wheels_cache: str  # the wheelhouse's directory name under ~/.cache/aifn/wheels, before its key
    # Where the Dockerfile COPYs the wheelhouse from in the context; None for a Dockerfile that does not:
    # the wheels and a pip.conf (no index, those wheels only) are then bind-mounted into its RUN steps
    # (`buildah bud --volume`), so nothing of them stays in a layer.
    wheelhouse_in_context: str | None


OPERATOR = Recipe(
    image=OPERATOR_IMAGE, what="operator image", dockerfile="Dockerfile", lock=LOCK, context_files=CONTEXT_FILES,
    context_trees=CONTEXT_TREES, build_stage_cache=BUILD_STAGE_CACHE, wheels_cache="operator-image",
    wheelhouse_in_context=WHEELHOUSE_IN_CONTEXT)


class BuildError(RuntimeError):
    """The image cannot be built on this host; the message says why and what to do."""


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _arch() -> tuple[str, str]:
    """(the OCI architecture, the manylinux machine) of this host."""
    machine = platform.machine()
    return {"x86_64": ("amd64", "x86_64"), "aarch64": ("arm64", "aarch64")}.get(machine) or _unsupported(machine)


def _unsupported(machine: str) -> tuple[str, str]:
    raise BuildError(f"no image recipe for a {machine} host (x86_64 and aarch64 are supported)")


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _run(argv: list[str], log: Log, *, quiet: bool = False, **kwargs: object) -> subprocess.CompletedProcess[str]:
    """Run a build step; on failure raise BuildError with the step's output tail."""
    result = subprocess.run(argv, capture_output=True, text=True, **kwargs)  # type: ignore[call-overload]
    if result.returncode != 0:
        output = (result.stdout + result.stderr).strip().splitlines()
        raise BuildError(f"{' '.join(argv[:4])} ... failed ({result.returncode}):\n" + "\n".join(output[-40:]))
    if not quiet and result.stdout.strip():
        for line in result.stdout.strip().splitlines()[-3:]:
            log(f"  {line}")
    return result


def check_host() -> None:
    """Root and the programs the build runs, or BuildError naming the apt-get line."""
    if os.geteuid() != 0:
        raise BuildError("building the operator image needs root (debootstrap, buildah's storage): run it with sudo")
    missing = [program for program in ("buildah", "debootstrap") if shutil.which(program) is None]
    if missing:
        raise BuildError(f"missing {', '.join(missing)}: apt-get install -y {' '.join(missing)}")


# --- buildah -------------------------------------------------------------------------------------

def _storage_driver() -> str:
    driver = os.environ.get("AIFN_BUILDAH_DRIVER")
    if driver:
        return driver
    with open("/proc/filesystems") as filesystems:
        return "overlay" if any(line.split()[-1] == "overlay" for line in filesystems if line.strip()) else "vfs"


def buildah_command() -> list[str]:
    """buildah with this project's own storage (never the host's default /var/lib/containers)."""
    driver = _storage_driver()
    root = CACHE / "buildah" / driver
    runroot = Path("/run/aifn-buildah") / driver if os.access("/run", os.W_OK) else CACHE / "buildah" / f"run-{driver}"
    return ["buildah", "--root", str(root), "--runroot", str(runroot), "--storage-driver", driver]


def _image_labels(name: str) -> dict[str, str] | None:
    """The labels of image `name` in our storage, or None if it is not there."""
    result = subprocess.run([*buildah_command(), "inspect", "--type", "image", name], capture_output=True, text=True)
    if result.returncode != 0:
        return None
    return json.loads(result.stdout).get("OCIv1", {}).get("config", {}).get("Labels") or {}


def _image_id(name: str) -> str | None:
    result = subprocess.run([*buildah_command(), "images", "--quiet", "--no-trunc", name], capture_output=True, text=True)
    return result.stdout.split()[0] if result.returncode == 0 and result.stdout.split() else None


@contextlib.contextmanager
def _build_lock() -> Iterator[None]:
    """One build at a time on this host (make and a pytest fixture may race)."""
    (CACHE / "buildah").mkdir(parents=True, exist_ok=True)
    with open(CACHE / "buildah" / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _mounts_under(path: Path) -> list[str]:
    prefix = str(path.resolve()) + "/"
    with open("/proc/self/mountinfo") as mountinfo:
        points = [line.split()[4] for line in mountinfo]
    return sorted((p for p in points if (p + "/").startswith(prefix)), key=len, reverse=True)


def _remove_tree(path: Path) -> None:
    """rm -rf a scratch tree, unmounting first whatever a failed step left mounted in it (debootstrap's /proc)."""
    for point in _mounts_under(path):
        subprocess.run(["umount", "--lazy", point], capture_output=True)
    if _mounts_under(path):
        raise BuildError(f"{path} still has mounts ({', '.join(_mounts_under(path))}); unmount them and remove it")
    shutil.rmtree(path, ignore_errors=True)


# --- the base ------------------------------------------------------------------------------------

def base_recipe_hash() -> str:
    arch, _ = _arch()
    recipe = [BASE_RECIPE_VERSION, DEBIAN_SUITE, arch, sorted(BASE_PACKAGES), BASE_IMAGE]
    return _sha256(json.dumps(recipe).encode())[:16]


def ensure_base(log: Log = _stderr) -> str:
    """BASE_IMAGE in our buildah storage, built when missing or made by another recipe; its recipe hash."""
    recipe = base_recipe_hash()
    labels = _image_labels(BASE_IMAGE)
    if labels is not None and labels.get("dev.aifn.base-recipe") == recipe:
        return recipe
    previous = _image_id(BASE_IMAGE)
    started = time.monotonic()
    log(f"operator image: building the base {BASE_IMAGE} (debootstrap {DEBIAN_SUITE} + Python 3.11; about 2-3 minutes)")
    scratch = Path(tempfile.mkdtemp(prefix="base-", dir=CACHE / "buildah"))
    try:
        _build_base(scratch, recipe, log)
    finally:
        _remove_tree(scratch)
    if previous and previous != _image_id(BASE_IMAGE):
        subprocess.run([*buildah_command(), "rmi", previous], capture_output=True)  # kept if cached layers use it
    log(f"operator image: base built in {time.monotonic() - started:.0f}s")
    return recipe


def _build_base(scratch: Path, recipe: str, log: Log) -> None:
    rootfs = scratch / "rootfs"
    debs = CACHE / "debootstrap" / DEBIAN_SUITE
    debs.mkdir(parents=True, exist_ok=True)
    arch, _ = _arch()
    _run(["debootstrap", "--variant=minbase", f"--arch={arch}", f"--cache-dir={debs}",
          f"--include={','.join(BASE_PACKAGES)}", DEBIAN_SUITE, str(rootfs), DEBIAN_MIRROR], log, quiet=True)
    # Updates and security fixes, as the Docker Hub image has them; no service may start meanwhile.
    (rootfs / "etc/apt/sources.list").write_text(
        f"deb {DEBIAN_MIRROR} {DEBIAN_SUITE} main\n"
        f"deb {DEBIAN_MIRROR} {DEBIAN_SUITE}-updates main\n"
        f"deb {DEBIAN_SECURITY_MIRROR} {DEBIAN_SUITE}-security main\n")
    policy = rootfs / "usr/sbin/policy-rc.d"
    policy.write_text("#!/bin/sh\nexit 101\n")
    policy.chmod(0o755)
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "DEBIAN_FRONTEND": "noninteractive", "LANG": "C.UTF-8"}
    _run(["chroot", str(rootfs), "apt-get", "update", "-qq"], log, env=env)
    _run(["chroot", str(rootfs), "apt-get", "upgrade", "-y", "-qq", "-o", "Dpkg::Options::=--force-confold"], log,
         quiet=True, env=env)
    _run(["chroot", str(rootfs), "apt-get", "clean"], log, env=env)
    policy.unlink()
    # Slim: what a container never reads, and nothing of this host (debootstrap copies its resolv.conf
    # and hostname; the runtime provides both).
    for pattern in ("usr/share/doc/*", "usr/share/man/*", "usr/share/info/*", "var/lib/apt/lists/*",
                    "var/cache/apt/*.bin", "var/cache/debconf/*-old", "var/log/*.log", "var/log/apt/*",
                    "etc/resolv.conf", "etc/hostname"):
        for path in rootfs.glob(pattern):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
    for path in (rootfs / "usr/share/locale").iterdir():
        if path.name != "locale.alias":
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    layer = scratch / "rootfs.tar"
    _run(["tar", "--create", "--file", str(layer), "--directory", str(rootfs), "--numeric-owner", "--sort=name",
          "--exclude=./dev/*", "--exclude=./proc/*", "--exclude=./sys/*", "."], log)
    buildah = buildah_command()
    container = _run([*buildah, "from", "--name", f"aifn-base-{recipe}", "scratch"], log, quiet=True).stdout.strip()
    try:
        _run([*buildah, "add", container, str(layer), "/"], log, quiet=True)
        _run([*buildah, "config", "--os", "linux", "--arch", arch,
              "--env", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "--env", "LANG=C.UTF-8",
              "--cmd", "python3", "--label", f"dev.aifn.base-recipe={recipe}",
              "--label", f"org.opencontainers.image.description=Debian {DEBIAN_SUITE} minbase with Debian's Python 3.11"
                         " (aifn's local stand-in for python:3.11-slim-bookworm)",
              container], log)
        _run([*buildah, "commit", "--quiet", "--rm", container, BASE_IMAGE], log, quiet=True)
    except BaseException:
        subprocess.run([*buildah, "rm", container], capture_output=True)
        raise


# --- wheels --------------------------------------------------------------------------------------

def wheelhouse(log: Log = _stderr, recipe: Recipe = OPERATOR) -> Path:
    """The lock's and the build backend's wheels for the image's Python, downloaded on this host (cached)."""
    lock = recipe.lock
    _, machine = _arch()
    platform_tag = f"manylinux_{GLIBC}_{machine}"
    # pip does not widen a perennial manylinux tag to the older ones it implies: name them all.
    platforms = [f"manylinux_2_{minor}_{machine}" for minor in range(int(GLIBC.split("_")[1]), 4, -1)]
    platforms += [f"{legacy}_{machine}" for legacy in ("manylinux2014", "manylinux2010", "manylinux1")]
    key = _sha256(json.dumps([lock.read_text(), BUILD_REQUIREMENTS, platforms]).encode())[:16]
    out = CACHE / "wheels" / f"{recipe.wheels_cache}-{key}"
    if out.is_dir():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    log(f"{recipe.what}: downloading wheels for CPython 3.11 {platform_tag} (pip on the host)")
    tmp = Path(tempfile.mkdtemp(prefix=f"{out.name}.", dir=out.parent))
    try:
        _run([sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check", "--no-deps",
              "--only-binary=:all:", "--python-version", "3.11", "--implementation", "cp", "--abi", "cp311",
              *(f"--platform={tag}" for tag in platforms), "--dest", str(tmp), "-r", str(lock), *BUILD_REQUIREMENTS], log,
             env={k: v for k, v in os.environ.items() if k != "PIP_FIND_LINKS"})  # PyPI's wheels only
        tmp.chmod(0o755)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


# --- the operator image --------------------------------------------------------------------------

def _context_files(recipe: Recipe = OPERATOR) -> list[Path]:
    """Every file the build context holds, except the wheels (relative to ROOT)."""
    files = [Path(name) for name in recipe.context_files]
    for tree in recipe.context_trees:
        for path in sorted((ROOT / tree).rglob("*")):
            relative = path.relative_to(ROOT)
            if path.is_file() and not any(part.endswith(".egg-info") or part == "__pycache__"
                                          for part in relative.parts) and path.suffix != ".pyc":
                files.append(relative)
    return files


def input_hash(wheels: Path, base_recipe: str, tree: Path = ROOT, recipe: Recipe = OPERATOR) -> str:
    """A hash of everything that determines the image (the context's files as in `tree`)."""
    digest = hashlib.sha256(json.dumps([recipe.image, BASE_IMAGE, base_recipe]).encode())
    for relative in _context_files(recipe):
        digest.update(f"{relative}\0{file_sha256(tree / relative)}\0".encode())
    for wheel in sorted(wheels.iterdir()):
        digest.update(f"{wheel.name}\0{file_sha256(wheel)}\0".encode())
    return digest.hexdigest()[:16]


def archive_path(hash_: str, recipe: Recipe = OPERATOR) -> Path:
    repository, _, tag = recipe.image.rpartition(":")
    return IMAGES / f"{repository.replace('/', '_')}-{tag}-{hash_}.tar"


def operator_image_archive(log: Log = _stderr, *, rebuild: bool = False) -> Path:
    """The OCI archive of localhost/aifn/aifunction-operator:dev, built with buildah when its inputs changed.

    Import it into a node's containerd with support.cluster.images.import_archive(archive, OPERATOR_IMAGE, socket).
    """
    return build_image_archive(OPERATOR, log, rebuild=rebuild)


def build_image_archive(recipe: Recipe, log: Log = _stderr, *, rebuild: bool = False) -> Path:
    """The OCI archive of `recipe.image`, built with buildah from its Dockerfile when its inputs changed."""
    with _build_lock():
        wheels = wheelhouse(log, recipe)
        out = archive_path(input_hash(wheels, base_recipe_hash(), recipe=recipe), recipe)
        if out.exists() and not rebuild:
            return out
        check_host()
        started = time.monotonic()
        base = ensure_base(log)
        IMAGES.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix=f"{recipe.wheels_cache}-", dir=CACHE / "buildah"))
        try:
            context = scratch / "context"
            for relative in _context_files(recipe):
                (context / relative).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(ROOT / relative, context / relative)
            mounts: list[str] = []
            if recipe.wheelhouse_in_context is not None:
                (context / recipe.wheelhouse_in_context).mkdir(parents=True)
                for wheel in wheels.iterdir():
                    try:
                        os.link(wheel, context / recipe.wheelhouse_in_context / wheel.name)
                    except OSError:  # another file system
                        shutil.copy2(wheel, context / recipe.wheelhouse_in_context / wheel.name)
            else:
                pip_conf = scratch / "pip.conf"
                pip_conf.write_text("[global]\nno-index = true\nfind-links = /tmp/wheels\n")
                pip_conf.chmod(0o644)
                scratch.chmod(0o755)
                mounts = ["--volume", f"{wheels}:/tmp/wheels:ro", "--volume", f"{pip_conf}:/etc/pip.conf:ro"]
            # what is built, should the tree change meanwhile
            out = archive_path(input_hash(wheels, base, context, recipe), recipe)
            log(f"{recipe.what}: buildah bud {recipe.image} from {recipe.dockerfile}")
            buildah = buildah_command()
            # RUN steps in runc with no network at all (the wheelhouse is all pip gets); `chroot` isolation,
            # for hosts where runc cannot run them, can only share the host's network.
            isolation = os.environ.get("AIFN_BUILDAH_ISOLATION", "oci")
            bud = [*buildah, "bud", "--layers", "--force-rm", "--isolation", isolation,
                   *(["--network", "none"] if isolation != "chroot" else []), "--pull=never", "--format", "oci",
                   *mounts, "--build-arg", f"PYTHON_IMAGE={BASE_IMAGE}", "--file", str(context / recipe.dockerfile)]
            # The build stage first, under a tag, so that pruning below keeps its layers (the installed lock)
            # as the cache of the next build; then the whole Dockerfile, its build stage from that cache.
            _run([*bud, "--target", "build", "--tag", recipe.build_stage_cache, str(context)], log, quiet=True)
            _run([*bud, "--tag", recipe.image, str(context)], log, quiet=True)
            partial = scratch / "image.tar"
            _run([*buildah, "push", "--quiet", recipe.image, f"oci-archive:{partial}:{recipe.image}"], log)
            _check_archive_name(partial, recipe.image)
            os.replace(partial, out)
        finally:
            _remove_tree(scratch)
        # Older archives of this image, and images no tag leads to any more (older builds' layers).
        for old in IMAGES.glob(archive_path("*", recipe).name):
            if old != out:
                old.unlink(missing_ok=True)
        subprocess.run([*buildah_command(), "rmi", "--prune"], capture_output=True)
        log(f"{recipe.what}: {recipe.image} built in {time.monotonic() - started:.0f}s "
            f"({out.stat().st_size / 1e6:.0f} MB archive)")
        return out


def _check_archive_name(archive: Path, name: str) -> None:
    """The archive's index must name the image as `ctr images import` will (its full reference)."""
    with tarfile.open(archive) as tar:
        member = tar.extractfile("index.json")
        assert member is not None
        index = json.load(member)
    names = [m.get("annotations", {}).get("io.containerd.image.name") or
             m.get("annotations", {}).get("org.opencontainers.image.ref.name") for m in index["manifests"]]
    if names != [name]:
        raise BuildError(f"{archive}: index.json names {names}, expected [{name!r}]")


# --- checking an archive in a throwaway containerd ----------------------------------------------

def verify_archive(archive: Path, name: str = OPERATOR_IMAGE, log: Log = _stderr) -> str:
    """Import `archive` into a throwaway containerd and run the image once as its own user, read-only.

    Checks that `ctr images import` names it `name`, that its entrypoint is `aifn operator` run as
    65532, that `aifn operator --help` succeeds and that no pip is importable. Removes the
    containerd, its directories and mounts afterwards. Returns what the container printed.
    """
    with throwaway_containerd() as ctr:
        _run([*ctr, "images", "import", str(archive)], log, quiet=True)
        listed = _run([*ctr, "images", "list", "--quiet"], log, quiet=True).stdout.split()
        if name not in listed:
            raise BuildError(f"ctr images import named it {listed}, not {name}")
        config_json = _image_config(archive)
        if config_json.get("Entrypoint") != ["aifn", "operator"] or config_json.get("User") != "65532:65532":
            raise BuildError(f"image config: Entrypoint {config_json.get('Entrypoint')}, User {config_json.get('User')}")
        probe = ("set -e; echo uid=$(id -u) gid=$(id -g); "
                 "aifn operator --help >/tmp/help 2>&1 || { cat /tmp/help; exit 1; }; grep -c -- --namespace /tmp/help; "
                 "if python -c 'import pip' 2>/dev/null; then echo 'pip is importable'; exit 1; fi; "
                 "python --version; echo entrypoint-ok")
        # The chart's securityContext: the image's user, a read-only root file system, /tmp a tmpfs.
        result = _run([*ctr, "run", "--rm", "--read-only", "--mount", "type=tmpfs,src=tmpfs,dst=/tmp,options=rw:nosuid:nodev",
                       name, f"aifn-verify-{os.getpid()}", "sh", "-c", probe], log, quiet=True, timeout=120)
        if "uid=65532 gid=65532" not in result.stdout or "entrypoint-ok" not in result.stdout:
            raise BuildError(f"the image's probe said:\n{result.stdout}{result.stderr}")
        return result.stdout


@contextlib.contextmanager
def throwaway_containerd() -> Iterator[list[str]]:
    """A containerd of its own (no CRI) in a scratch directory; yields its `ctr` argv (namespace k8s.io).

    Stops it and removes its directories and mounts afterwards.
    """
    if shutil.which("containerd") is None or shutil.which("ctr") is None or shutil.which("runc") is None:
        raise BuildError("missing containerd or runc: apt-get install -y containerd runc")
    scratch = Path(tempfile.mkdtemp(prefix="aifn-verify-"))
    socket = scratch / "containerd.sock"
    config = scratch / "config.toml"
    config.write_text(
        "version = 2\n"
        f'root = "{scratch}/root"\nstate = "{scratch}/state"\n'
        'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n'
        f'[grpc]\n  address = "{socket}"\n'
        f'[ttrpc]\n  address = "{scratch}/containerd.sock.ttrpc"\n'
        '[debug]\n  address = ""\n[metrics]\n  address = ""\n')
    log_file = open(scratch / "containerd.log", "wb")
    daemon = subprocess.Popen(["containerd", "--config", str(config)], stdout=log_file, stderr=subprocess.STDOUT,
                              start_new_session=True)
    ctr = ["ctr", "--address", str(socket), "--namespace", "k8s.io"]
    try:
        deadline = time.monotonic() + 30
        while subprocess.run([*ctr, "version"], capture_output=True).returncode != 0:
            if daemon.poll() is not None or time.monotonic() > deadline:
                raise BuildError("the throwaway containerd did not start:\n" + (scratch / "containerd.log").read_text()[-2000:])
            time.sleep(0.2)
        yield ctr
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(daemon.pid, signal.SIGTERM)
        try:
            daemon.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(daemon.pid, signal.SIGKILL)
            daemon.wait()
        log_file.close()
        _remove_tree(scratch)


def _image_config(archive: Path) -> dict:
    """The `config` object of the (single) image in an OCI archive."""
    with tarfile.open(archive) as tar:
        def blob(digest: str) -> dict:
            member = tar.extractfile(f"blobs/sha256/{digest.split(':', 1)[1]}")
            assert member is not None
            return json.load(member)
        index_member = tar.extractfile("index.json")
        assert index_member is not None
        manifest = blob(json.load(index_member)["manifests"][0]["digest"])
        return blob(manifest["config"]["digest"]).get("config", {})
