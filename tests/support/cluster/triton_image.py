"""`localhost/aifn/tritonserver:2.51-cpu` without Docker: a Debian root file system with Triton, torch, transformers.

The image is the root file system of `triton_image_spec()` packed by `images.build_archive`:

- Debian bookworm minbase (`debootstrap`) with Python 3.11 and `libpython3.11` (the python backend
  stub links it);
- a virtual environment `/opt/venv` holding exactly the versions of the project's venv (torch with
  its nvidia-* libraries but without the optional `triton` compiler, numpy, transformers,
  tokenizers, safetensors and their dependencies) and `nvidia-pytriton` (the tritonserver 2.51
  binary and python backend; installed without its client dependencies);
- the wheel's 3.11 stub copied next to the python backend and `/opt/tritonserver` linking to the
  wheel's server directory, so Triton's default `--backend-directory` and `--cache-directory`
  work; `/usr/local/bin/tritonserver` (images/tritonserver/tritonserver) sets `LD_LIBRARY_PATH`
  and `PATH` as `aifunction_operator.local.tritonserver` does on a host;
- user `triton-server` (uid/gid 1000, home /home/triton-server), the image's default user.

Wheels are fetched on the host (pip inside the image cannot reach PyPI: only the host trusts the
TLS in between, and its trust settings stay out of the image) into ~/.cache/aifn/wheels and
installed offline inside the root file system. The root file system is cached in
~/.cache/aifn/rootfs/tritonserver-<hash>/, the hash covering every input (Debian suite, mirror and
packages, the pinned wheels, the wrapper, RECIPE_VERSION); it is built in a temporary directory,
stamped, then renamed, so a half-built tree is never used. Chroot steps run in a private mount
namespace (`unshare --mount`), so a killed build leaves no mount behind.

At run time the server writes only to /dev/shm (the python backend's shared memory) and /tmp (the
python backend creates /tmp/python_env_XXXXXX at start, a path compiled into it): the image's /tmp
is the usual 1777 directory, which a container with a writable root file system (what the renderer
writes) can use; with readOnlyRootFilesystem a pod needs an emptyDir at /tmp. `smoke_test_rootfs`
runs the server with a read-only root and only those two writable.

Use (as root): `build_archive(triton_image_spec())`; in a test, `smoke_test_rootfs(spec.rootfs,
ROOT / "model_repo")`; by hand, `python -m tests.support.cluster.triton_image [MODEL_REPO]`.
Measured here (2 cores): a cold root file system 200-210 s (wheel download about 45 s of it),
5.0 GB; its archive 4.84 GiB, 30-45 s; a cached triton_image_spec() + build_archive() 0.1 s.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from .images import ImageSpec

IMAGE_NAME = "localhost/aifn/tritonserver:2.51-cpu"
ROOTFS_CACHE = Path(os.environ.get("AIFN_ROOTFS_CACHE", Path.home() / ".cache" / "aifn" / "rootfs"))
WHEEL_CACHE = Path(os.environ.get("AIFN_WHEEL_CACHE", Path.home() / ".cache" / "aifn" / "wheels"))
WRAPPER = Path(__file__).resolve().parents[3] / "images" / "tritonserver" / "tritonserver"
RECIPE_VERSION = 1  # bump when the build steps below change in a way the other inputs do not show

DEBIAN_SUITE = "bookworm"
DEBIAN_MIRROR = "http://deb.debian.org/debian"
# python3-venv brings ensurepip's pip wheel (the offline installer); ca-certificates is Debian's own
# trust store, for s3://, gs:// and https model repositories.
DEBIAN_PACKAGES = ("python3", "libpython3.11", "python3-venv", "ca-certificates")
PYTHON = "3.11"
# What the models in model_repo/ import (digits: torch, numpy; minilm: transformers and friends).
PYTHON_ROOTS = ("torch", "numpy", "transformers", "tokenizers", "safetensors")
# torch's optional compiler (about 1 GB): torch imports and runs TorchScript without it.
PYTHON_EXCLUDED = frozenset({"triton"})
SERVER_WHEEL = "nvidia-pytriton"  # installed without dependencies: only its tritonserver is used

UID = GID = 1000
USER = "triton-server"
HOME = f"/home/{USER}"
VENV = "/opt/venv"
SITE_PACKAGES = f"{VENV}/lib/python{PYTHON}/site-packages"
TRITON_DIR = f"{SITE_PACKAGES}/pytriton/tritonserver"
ENTRYPOINT = "/usr/local/bin/tritonserver"
MODEL_MOUNT = "/mnt/models"  # where the renderer mounts a model repository; exists in the image
ENV = (
    f"PATH=/usr/local/bin:{VENV}/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin",
    f"HOME={HOME}",
    "LANG=C.UTF-8",
)
STAMP = ".aifn-rootfs-hash"


# ---------------------------------------------------------------------------------------------
# inputs


def python_requirements() -> list[str]:
    """`name==version` pins: PYTHON_ROOTS and their dependencies as this interpreter's environment has them.

    Walks the installed distributions' metadata (markers evaluated for this interpreter, extras
    followed), leaves out PYTHON_EXCLUDED, and adds SERVER_WHEEL alone.
    """
    pins: dict[str, str] = {}
    seen: set[tuple[str, tuple[str, ...]]] = set()
    stack: list[tuple[str, tuple[str, ...]]] = [(name, ()) for name in PYTHON_ROOTS]
    while stack:
        name, extras = stack.pop()
        key = canonicalize_name(name)
        if key in PYTHON_EXCLUDED or (key, extras) in seen:
            continue
        seen.add((key, extras))
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError as exc:
            raise RuntimeError(f"{name} is not installed in {sys.prefix}; run `make setup` first") from exc
        pins[key] = dist.version
        for line in dist.requires or []:
            req = Requirement(line)
            environments = [{"extra": extra} for extra in extras] or [{"extra": ""}]
            if req.marker is None or any(req.marker.evaluate(env) for env in environments):
                stack.append((req.name, tuple(sorted(req.extras))))
    pins[canonicalize_name(SERVER_WHEEL)] = metadata.version(SERVER_WHEEL)
    return [f"{name}=={version}" for name, version in sorted(pins.items())]


def rootfs_inputs(requirements: Sequence[str]) -> dict:
    """Everything the root file system is made from (its hash names the cache directory)."""
    return {
        "recipe": RECIPE_VERSION,
        "debian": {"suite": DEBIAN_SUITE, "mirror": DEBIAN_MIRROR, "packages": list(DEBIAN_PACKAGES)},
        "python": PYTHON,
        "requirements": list(requirements),
        "wrapper": hashlib.sha256(WRAPPER.read_bytes()).hexdigest(),
        "user": [USER, UID, GID, HOME],
    }


# ---------------------------------------------------------------------------------------------
# build


def ensure_rootfs(cache: Path = ROOTFS_CACHE, log: Callable[[str], None] = print) -> Path:
    """The cached root file system for the current inputs, built first if missing (needs root)."""
    requirements = python_requirements()
    inputs = rootfs_inputs(requirements)
    stamp = json.dumps(inputs, sort_keys=True)
    digest = hashlib.sha256(stamp.encode()).hexdigest()[:16]
    final = cache / f"tritonserver-{digest}"
    if (final / STAMP).is_file():
        return final
    if os.geteuid() != 0:
        raise PermissionError(f"building {final} needs root (debootstrap, chroot); run as root")
    cache.mkdir(parents=True, exist_ok=True)
    with _locked(cache / ".tritonserver.lock"):
        if (final / STAMP).is_file():  # another process built it while we waited
            return final
        for half_built in cache.glob(".tritonserver-build-*"):  # left by a killed build
            shutil.rmtree(half_built, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(prefix=".tritonserver-build-", dir=cache))
        os.chmod(tmp, 0o755)  # mkdtemp's 0700 would become the image's "/"
        try:
            started = time.monotonic()
            _build(tmp, requirements, log)
            (tmp / STAMP).write_text(stamp + "\n")  # last: the stamp says the tree is complete
            os.rename(tmp, final)
            _remove_older(cache, keep=final)
            log(f"triton image: root file system {final} built in {time.monotonic() - started:.0f}s")
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return final


def triton_image_spec(cache: Path = ROOTFS_CACHE, *, log: Callable[[str], None] = print) -> ImageSpec:
    """The ImageSpec of IMAGE_NAME; (re)builds its root file system when its inputs changed (about 4 min)."""
    rootfs = ensure_rootfs(cache, log)
    return ImageSpec(
        name=IMAGE_NAME,
        rootfs=rootfs,
        entrypoint=(ENTRYPOINT,),
        user=f"{UID}:{GID}",
        env=ENV,
        workdir=HOME,
        labels={
            "org.opencontainers.image.title": "aifn tritonserver (CPU, python backend, torch)",
            "dev.aifn.triton.version": "2.51.0",
        },
    )


def fetch_wheels(requirements: Sequence[str], dest: Path = WHEEL_CACHE) -> list[Path]:
    """Download (or find in `dest`) the manylinux/cp311 wheels of `requirements` with the host's pip."""
    dest.mkdir(parents=True, exist_ok=True)
    platforms = [f"manylinux_2_{minor}_x86_64" for minor in range(36, 4, -1)]  # bookworm's glibc is 2.36
    platforms += ["manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64"]
    with tempfile.NamedTemporaryFile("w", suffix=".txt") as reqs:
        reqs.write("\n".join(requirements) + "\n")
        reqs.flush()
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
             "--python-version", PYTHON, "--implementation", "cp", "--abi", "cp311", "--abi", "abi3",
             "--abi", "none", *(arg for p in platforms for arg in ("--platform", p)),
             "--dest", str(dest), "--requirement", reqs.name],
            check=True,
        )
    wanted = {canonicalize_name(r.split("==")[0]): r.split("==")[1] for r in requirements}
    wheels = []
    for wheel in sorted(dest.glob("*.whl")):
        name, version = wheel.name.split("-")[:2]
        if wanted.get(canonicalize_name(name)) == version:
            wheels.append(wheel)
    missing = set(wanted) - {canonicalize_name(w.name.split("-")[0]) for w in wheels}
    if missing:
        raise RuntimeError(f"pip download left out {sorted(missing)}")
    return wheels


def _build(root: Path, requirements: Sequence[str], log: Callable[[str], None]) -> None:
    log(f"triton image: fetching {len(requirements)} wheels into {WHEEL_CACHE}")
    wheels = fetch_wheels(requirements)
    log(f"triton image: debootstrap {DEBIAN_SUITE} into {root}")
    subprocess.run(
        ["debootstrap", "--variant=minbase", f"--include={','.join(DEBIAN_PACKAGES)}", DEBIAN_SUITE, str(root),
         DEBIAN_MIRROR],
        check=True, stdout=subprocess.DEVNULL,
    )
    staged = root / "tmp" / "aifn-wheels"
    staged.mkdir()
    for wheel in wheels:
        try:
            os.link(wheel, staged / wheel.name)  # same file system: no 3 GB copy
        except OSError:
            shutil.copy2(wheel, staged / wheel.name)
    log("triton image: installing them into /opt/venv (offline)")
    _chroot(root, ["/usr/bin/python3", "-m", "venv", VENV])
    _chroot(root, [f"{VENV}/bin/python", "-m", "pip", "install", "--quiet", "--no-index", "--no-deps",
                   "--no-cache-dir", "--disable-pip-version-check", *(f"/tmp/aifn-wheels/{w.name}" for w in wheels)])
    shutil.rmtree(staged)
    # The stub for this Python next to the python backend; /opt/tritonserver = Triton's default layout.
    stub = f"{TRITON_DIR}/python_backend_stubs/{PYTHON}/triton_python_backend_stub"
    shutil.copy2(root / stub.lstrip("/"), root / TRITON_DIR.lstrip("/") / "backends" / "python")
    (root / "opt" / "tritonserver").symlink_to(TRITON_DIR)
    _chroot(root, [f"{VENV}/bin/python", "-m", "compileall", "-q", f"{TRITON_DIR}/backends/python"])
    shutil.copy2(WRAPPER, root / ENTRYPOINT.lstrip("/"))
    os.chmod(root / ENTRYPOINT.lstrip("/"), 0o755)
    # The user the renderer runs Triton as (NGC images call uid 1000 triton-server).
    with open(root / "etc" / "passwd", "a") as passwd:
        passwd.write(f"{USER}:x:{UID}:{GID}:Triton Server:{HOME}:/usr/sbin/nologin\n")
    with open(root / "etc" / "group", "a") as group:
        group.write(f"{USER}:x:{GID}:\n")
    with open(root / "etc" / "shadow", "a") as shadow:
        shadow.write(f"{USER}:*:19000:0:99999:7:::\n")
    home = root / HOME.lstrip("/")
    home.mkdir(parents=True)
    os.chown(home, UID, GID)
    (root / MODEL_MOUNT.lstrip("/")).mkdir(parents=True, exist_ok=True)
    # What the image does not need at run time.
    for leftover in ("var/cache/apt/archives", "var/lib/apt/lists"):
        for path in (root / leftover).glob("*"):
            if path.is_file():
                path.unlink()
    for path in (root / "var" / "cache" / "apt").glob("*.bin"):
        path.unlink()
    log("triton image: checking that torch, transformers and tritonserver load")
    _chroot(root, [f"{VENV}/bin/python", "-c",
                   "import numpy, torch, transformers, tokenizers, safetensors; "
                   "assert torch.nn.functional.relu(torch.tensor([-1.0, 2.0])).sum().item() == 2"],
            user=f"{UID}:{GID}")
    # --help exits 1; the usage text proves the binary and its libraries load.
    usage = _chroot(root, ["sh", "-c", f"{ENTRYPOINT} --help 2>&1 || true"], user=f"{UID}:{GID}",
                    stdout=subprocess.PIPE)
    if "Usage: tritonserver" not in usage:
        raise RuntimeError(f"tritonserver does not start in {root}:\n{usage[-2000:]}")


def _chroot(root: Path, argv: Sequence[str], user: str | None = None, stdout: int | None = None) -> str:
    """Run `argv` chrooted into `root` with /proc mounted, in a private mount namespace (nothing leaks)."""
    script = 'mount -t proc proc "$1/proc" && shift && exec chroot "$@"'
    env = [*ENV] if user else [e if not e.startswith("HOME=") else "HOME=/root" for e in ENV]
    chroot_args = ([f"--userspec={user}"] if user else []) + [str(root), "/usr/bin/env", "-i", *env, *argv]
    done = subprocess.run(["unshare", "--mount", "--propagation", "private", "--fork", "sh", "-c", script, "sh",
                           str(root), *chroot_args], check=True, stdout=stdout, text=True)
    return done.stdout or ""


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _remove_older(cache: Path, keep: Path) -> None:
    """Root file systems of older inputs (5 GB each); their image archives stay in the image cache."""
    for path in cache.glob("tritonserver-*"):
        if path != keep and path.is_dir():
            shutil.rmtree(path, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# smoke test


# Runs inside `unshare --mount`: the mounts live in that namespace and vanish with its last process.
SANDBOX = r"""
set -eu
root=$1 repo=$2; shift 2
mount --bind "$root" "$root"
mount -t proc proc "$root/proc"
mount -t sysfs -o ro sysfs "$root/sys"
mount --rbind /dev "$root/dev"
mount -t tmpfs -o mode=1777,size=512m,nosuid,nodev shm "$root/dev/shm"
mount -t tmpfs -o mode=1777,size=64m,nosuid,nodev tmp "$root/tmp"
mount --bind "$repo" "$root/mnt/models"
mount -o remount,bind,ro "$root/mnt/models"
mount -o remount,bind,ro "$root"
exec chroot "$root" /usr/bin/setpriv --reuid=%(uid)d --regid=%(gid)d --clear-groups --inh-caps=-all \
    --bounding-set=-all --no-new-privs -- "$@"
""" % {"uid": UID, "gid": GID}


def smoke_test_rootfs(rootfs: Path, model_repo: Path, models: Sequence[str] | None = None,
                      timeout: float = 180.0) -> None:
    """Serve `models` from `rootfs` as a pod would, answer inferences, raise AssertionError on a failure.

    Each model gets its own server, started with the container command the renderer writes
    (`tritonserver` + `triton_args`, free ports on all interfaces) in a private mount namespace:
    `rootfs` read-only, `model_repo` read-only at /mnt/models, fresh tmpfs at /dev/shm and /tmp
    (the only writable places), uid/gid 1000 without capabilities and with no_new_privs (seccomp
    is not applied), only the image's environment. Checks: digits classifies load_digits
    (accuracy >= 0.97 over HTTP); minilm returns unit-norm 384-d embeddings that rank a paraphrase
    above an unrelated sentence. `models` defaults to digits, plus minilm when its weights exist
    (`make models`). Needs root; leaves no process or mount behind.
    """
    if models is None:
        models = ["digits"] + (["minilm"] if (model_repo / "minilm" / "1" / "weights").is_dir() else [])
    for model in models:
        with _sandboxed_server(rootfs, model_repo.resolve(), model, timeout) as url:
            {"digits": _check_digits, "minilm": _check_minilm}[model](url)


@contextlib.contextmanager
def _sandboxed_server(rootfs: Path, model_repo: Path, model: str, timeout: float) -> Iterator[str]:
    from aifunction_operator.local.tritonserver import free_ports  # noqa: PLC0415
    from aifunction_operator.triton_command import TritonPorts, triton_args  # noqa: PLC0415

    chosen = free_ports()
    ports = TritonPorts(http=chosen.http, grpc=chosen.grpc, metrics=chosen.metrics)  # all interfaces, as in a pod
    command = ["tritonserver", *triton_args(model_repository=MODEL_MOUNT, model_name=model, ports=ports)]
    log = tempfile.NamedTemporaryFile(prefix=f"triton-image-{model}-", suffix=".log", delete=False)
    proc = subprocess.Popen(
        ["unshare", "--mount", "--propagation", "private", "--fork", "sh", "-c", SANDBOX, "sh", str(rootfs),
         str(model_repo), "/usr/bin/env", "-i", *ENV, *command],
        stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    url = f"127.0.0.1:{ports.http}"
    passed = False
    try:
        deadline = time.monotonic() + timeout
        while not _ready(url):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"tritonserver ({model}) in {rootfs} not ready (exit {proc.poll()}); "
                                     f"log {log.name}:\n{Path(log.name).read_text(errors='replace')[-4000:]}")
            time.sleep(0.5)
        yield url
        passed = True
    finally:
        _stop_group(proc)
        log.close()
        if passed:
            os.unlink(log.name)


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"http://{url}/v2/health/ready", timeout=1.0) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _stop_group(proc: subprocess.Popen) -> None:
    """SIGTERM the sandbox's process group, SIGKILL after 15 s; its mount namespace dies with it."""
    for sig, wait in ((signal.SIGTERM, 15.0), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            proc.poll()
            if not _group_alive(proc.pid):
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(5.0)
                return
            time.sleep(0.1)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    # zombies count as alive for killpg; ignore a reaped leader's group once only zombies remain
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def _check_digits(url: str) -> None:
    import numpy as np  # noqa: PLC0415
    import tritonclient.http as httpclient  # noqa: PLC0415
    from sklearn.datasets import load_digits  # noqa: PLC0415

    data = load_digits()
    images, truth = data.images.astype(np.float32), data.target
    client = httpclient.InferenceServerClient(url)
    try:
        labels = []
        for start in range(0, len(images), 128):
            batch = images[start : start + 128]
            tensor = httpclient.InferInput("image", list(batch.shape), "FP32")
            tensor.set_data_from_numpy(batch)
            labels.append(client.infer("digits", [tensor]).as_numpy("label")[:, 0])
    finally:
        client.close()
    accuracy = float((np.concatenate(labels) == truth).mean())
    assert accuracy >= 0.97, f"digits accuracy {accuracy:.4f} on load_digits"


def _check_minilm(url: str) -> None:
    import numpy as np  # noqa: PLC0415
    import tritonclient.http as httpclient  # noqa: PLC0415

    texts = np.array([[b"A man is playing a guitar."], [b"Someone plays an instrument."],
                      [b"The stock market fell sharply today."]], dtype=object)
    client = httpclient.InferenceServerClient(url)
    try:
        tensor = httpclient.InferInput("text", list(texts.shape), "BYTES")
        tensor.set_data_from_numpy(texts)
        embeddings = client.infer("minilm", [tensor]).as_numpy("embedding")
    finally:
        client.close()
    assert embeddings.shape == (3, 384), embeddings.shape
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-4)
    assert embeddings[0] @ embeddings[1] > embeddings[0] @ embeddings[2] + 0.2, embeddings @ embeddings.T


if __name__ == "__main__":  # python -m tests.support.cluster.triton_image [MODEL_REPO]
    built = time.monotonic()
    spec = triton_image_spec()
    print(f"rootfs {spec.rootfs} ready in {time.monotonic() - built:.1f}s")
    smoke_test_rootfs(spec.rootfs, Path(sys.argv[1] if len(sys.argv) > 1 else "model_repo"))
    print("smoke test passed")
