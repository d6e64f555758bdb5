"""Container images without Docker or a registry: OCI image archives built from files, imported into containerd.

An image here is an OCI image layout (oci-layout, index.json, blobs) packed as a tar, the format
`ctr images import` reads. Layers are plain tars built deterministically (sorted, owner 0, mtime
0), so the same inputs give the same digests. Archives are cached in ~/.cache/aifn/images/ under
a hash of their inputs and rebuilt only when those change; a node imports an image only when its
containerd lacks that exact digest. Pods use them with imagePullPolicy IfNotPresent or Never.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import tarfile
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

CACHE = Path(os.environ.get("AIFN_IMAGE_CACHE", Path.home() / ".cache" / "aifn" / "images"))
LAYER_MEDIA_TYPE = "application/vnd.oci.image.layer.v1.tar"


@dataclass(frozen=True)
class ImageFile:
    """A file (or a directory tree) of the host placed at `target` inside the image."""

    source: Path
    target: str  # absolute path in the image
    mode: int | None = None  # None: keep the source's mode


@dataclass(frozen=True)
class ImageSpec:
    """What an image holds and how it starts."""

    name: str  # e.g. localhost/aifn/pause:3.10
    files: tuple[ImageFile, ...] = ()
    rootfs: Path | None = None  # a whole root file system as the first layer (e.g. from debootstrap)
    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    user: str = ""
    env: tuple[str, ...] = ("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",)
    workdir: str = "/"
    labels: dict[str, str] = field(default_factory=dict)

    def config(self) -> dict:
        """The OCI image config (without rootfs, added when the layers are known)."""
        config: dict = {"Env": list(self.env), "WorkingDir": self.workdir}
        if self.entrypoint:
            config["Entrypoint"] = list(self.entrypoint)
        if self.cmd:
            config["Cmd"] = list(self.cmd)
        if self.user:
            config["User"] = self.user
        if self.labels:
            config["Labels"] = dict(self.labels)
        return config

    def input_hash(self) -> str:
        """A hash of everything that determines the archive (file contents, modes, config)."""
        digest = hashlib.sha256(json.dumps([self.name, self.config()], sort_keys=True).encode())
        for item in self.files:
            digest.update(f"{item.target}\0{item.mode}\0".encode())
            for path in _walk(item.source):
                digest.update(str(path.relative_to(item.source.parent)).encode())
                if path.is_file() and not path.is_symlink():
                    digest.update(file_sha256(path).encode())
        if self.rootfs is not None:
            stamp = self.rootfs / ".aifn-rootfs-hash"
            if not stamp.exists():
                raise FileNotFoundError(f"{stamp} is missing: build the root file system with its stamp first")
            digest.update(stamp.read_bytes())
        return digest.hexdigest()[:16]


def _walk(path: Path) -> list[Path]:
    if not path.is_dir() or path.is_symlink():
        return [path]
    return [path, *sorted(p for p in path.rglob("*"))]


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file's content, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _normalise(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mtime = 0
    return info


def _parents(target: str) -> list[str]:
    parts = target.strip("/").split("/")[:-1]
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]


def write_layer(files: Iterable[ImageFile], out: Path) -> None:
    """A deterministic tar layer holding `files` (with their parent directories)."""
    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tar:
        seen: set[str] = set()
        for item in files:
            for parent in _parents(item.target):
                if parent not in seen:
                    seen.add(parent)
                    info = _normalise(tarfile.TarInfo(parent))
                    info.type, info.mode = tarfile.DIRTYPE, 0o755
                    tar.addfile(info)
            for path in _walk(item.source):
                arcname = item.target.strip("/") + "/" + str(path.relative_to(item.source)) if path != item.source \
                    else item.target.strip("/")
                info = _normalise(tar.gettarinfo(str(path), arcname=arcname))
                if item.mode is not None and path == item.source:
                    info.mode = item.mode
                if info.isfile():
                    with open(path, "rb") as handle:
                        tar.addfile(info, handle)
                else:
                    tar.addfile(info)


def write_rootfs_layer(rootfs: Path, out: Path) -> None:
    """A tar layer of a whole root file system, as root:root files keep their owners."""
    subprocess.run(
        ["tar", "--create", "--file", str(out), "--directory", str(rootfs), "--numeric-owner", "--sort=name",
         "--mtime=@0", "--exclude=./.aifn-rootfs-hash", "--exclude=./dev/*", "--exclude=./proc/*", "--exclude=./sys/*",
         "."],
        check=True,
    )


def _add_blob(tar: tarfile.TarFile, data_or_path: bytes | Path) -> tuple[str, int]:
    if isinstance(data_or_path, Path):
        digest, size = file_sha256(data_or_path), data_or_path.stat().st_size
        info = _normalise(tarfile.TarInfo(f"blobs/sha256/{digest}"))
        info.size = size
        with open(data_or_path, "rb") as handle:
            tar.addfile(info, handle)
    else:
        digest, size = hashlib.sha256(data_or_path).hexdigest(), len(data_or_path)
        info = _normalise(tarfile.TarInfo(f"blobs/sha256/{digest}"))
        info.size = size
        tar.addfile(info, io.BytesIO(data_or_path))
    return f"sha256:{digest}", size


def build_archive(spec: ImageSpec, cache: Path = CACHE) -> Path:
    """The OCI archive of `spec`, from the cache when its inputs are unchanged."""
    repository, _, tag = spec.name.rpartition(":")
    out = cache / f"{repository.replace('/', '_')}-{tag}-{spec.input_hash()}.tar"
    if out.exists():
        return out
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        layers: list[Path] = []
        if spec.rootfs is not None:
            layers.append(Path(tmp) / "rootfs.tar")
            write_rootfs_layer(spec.rootfs, layers[-1])
        if spec.files:
            layers.append(Path(tmp) / "files.tar")
            write_layer(spec.files, layers[-1])
        partial = Path(tmp) / "image.tar"
        with tarfile.open(partial, "w") as tar:
            layer_descriptors = []
            diff_ids = []
            for layer in layers:
                digest, size = _add_blob(tar, layer)
                layer_descriptors.append({"mediaType": LAYER_MEDIA_TYPE, "digest": digest, "size": size})
                diff_ids.append(digest)  # uncompressed: the diff id is the blob's digest
            config = {
                "architecture": "amd64",
                "os": "linux",
                "config": spec.config(),
                "rootfs": {"type": "layers", "diff_ids": diff_ids},
                "history": [{"created_by": "aifn support.cluster.images"}],
            }
            config_digest, config_size = _add_blob(tar, json.dumps(config, sort_keys=True).encode())
            manifest = {
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest,
                           "size": config_size},
                "layers": layer_descriptors,
            }
            manifest_digest, manifest_size = _add_blob(tar, json.dumps(manifest, sort_keys=True).encode())
            index = {
                "schemaVersion": 2,
                "manifests": [{
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": manifest_digest,
                    "size": manifest_size,
                    "annotations": {"io.containerd.image.name": spec.name,
                                    "org.opencontainers.image.ref.name": tag},
                }],
            }
            for name, data in (("oci-layout", b'{"imageLayoutVersion":"1.0.0"}'),
                               ("index.json", json.dumps(index).encode())):
                info = _normalise(tarfile.TarInfo(name))
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        os.replace(partial, out)
    return out


def archive_manifest_digest(archive: Path) -> str:
    """The manifest digest an archive's index.json names (what containerd records as the image target)."""
    with tarfile.open(archive) as tar:
        member = tar.extractfile("index.json")
        assert member is not None
        return json.load(member)["manifests"][0]["digest"]


def import_archive(archive: Path, name: str, containerd_socket: Path) -> bool:
    """Import `archive` into a node's containerd (namespace k8s.io) unless it already has it; True if imported."""
    ctr = ["ctr", "--address", str(containerd_socket), "--namespace", "k8s.io"]
    listed = subprocess.run([*ctr, "images", "list", f"name=={name}"], capture_output=True, text=True, check=True)
    if archive_manifest_digest(archive) in listed.stdout:
        return False
    subprocess.run([*ctr, "images", "import", str(archive)], capture_output=True, text=True,
                   check=True)
    return True
