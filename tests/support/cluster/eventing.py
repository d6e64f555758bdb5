"""Knative Eventing 1.22 for the local cluster: images built here and Knative's own manifests, resolved.

support.cluster.stack installs it on `make cluster` (docs/eventing.md).

Every command that Eventing's release manifests for the core, the in-memory channel and the MT
channel-based broker name with `ko://` is built from the Go module `knative.dev/eventing` v0.49.2
(Knative 1.22.2) by hack/build-eventing.sh into bin/knative-eventing/<basename>. Each becomes an image
the way `ko` makes Knative's release images: the static binary at /ko-app/<basename> as the
entrypoint, `KO_DATA_PATH=/var/run/ko`, the non-root numeric user 65532. Eventing's `.ko.yaml` bases
its images on gcr.io/distroless/static:nonroot, which carries the time-zone database; ours carry
Go's own (`$GOROOT/lib/time/zoneinfo.zip` as /usr/share/zoneinfo.zip, named by `ZONEINFO`), since a
PingSource's `timezone` (the webhook validates it, mtping runs it: `CRON_TZ=<zone>`) needs one and
the binaries do not embed it. No CA bundle, no /etc/passwd, no shell.

The manifests are, in the order of the release's eventing.yaml (eventing-core.yaml,
mt-channel-broker.yaml, in-memory-channel.yaml), what hack/generate-yamls.sh at knative-v1.22.2
resolves: `ko resolve -R -f config/core/`, `ko resolve -f config/brokers/mt-channel-broker/` (NOT
recursive: its top-level files are all symlinks into roles/ and deployments/) and `ko resolve -R -f
config/channels/in-memory-channel/`. A module zip drops symlinks, so the Go module lacks config/core's
two image ConfigMaps (symlinks into third_party/eventing-integrations-latest/, which the module has)
and every top-level file of the broker's directory; they are restored from the files they point to
(checked against the tag with `git ls-tree`). Then, as knative.py does for Serving:
- every `ko://knative.dev/eventing/cmd/<path>` becomes `localhost/aifn/knative-eventing/<path>:v1.22`
  (the Deployments' and the StatefulSet's containers, and the controllers' env APISERVER_RA_IMAGE,
  AUTH_PROXY_IMAGE, DISPATCHER_IMAGE), with `imagePullPolicy: IfNotPresent` on those containers;
- `app.kubernetes.io/version: devel` (labels, and one annotation of config-ping-defaults) becomes
  "1.22.2", as the release script's sed does.
"""

from __future__ import annotations

import copy
import re
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .images import ImageFile, ImageSpec, build_archive
from .knative import KnativeError, dump, module_dir, resolve_ko_images, split_crds, strings

__all__ = [
    "COMMANDS", "CONFIG_DIRS", "EventingError", "ManifestFile", "build_images", "cluster_settings",
    "config_files", "default_broker", "dump", "image_name", "image_names", "image_spec", "manifests",
    "resolve", "split_crds", "with_local_cpu_requests",
]

ROOT = Path(__file__).resolve().parents[3]
TOOLS_MODULE = ROOT / "hack" / "tools" / "knative-eventing"
BIN = ROOT / "bin" / "knative-eventing"

EVENTING_MODULE = "knative.dev/eventing"
RELEASE = "1.22.2"  # knative.dev/eventing v0.49.2 = knative-v1.22.2 (the same commit, 532b01f0c)
TAG = "v1.22"
NAMESPACE = "knative-eventing"
NONROOT = "65532:65532"  # distroless/static:nonroot's user; Eventing's manifests only say runAsNonRoot
KO_DATA_PATH = "/var/run/ko"
ZONEINFO = "/usr/share/zoneinfo.zip"
IMAGE_REPOSITORY = "localhost/aifn/knative-eventing"

# The commands (paths under knative.dev/eventing/cmd/) that the three config directories name with
# ko://, as hack/build-eventing.sh builds them. Binaries and /ko-app/ use the last path element.
COMMANDS = (
    # config/core: Deployments controller, webhook, pingsource-mt-adapter, job-sink; StatefulSet
    # request-reply; the controller's env APISERVER_RA_IMAGE (ApiServerSource adapters) and
    # AUTH_PROXY_IMAGE (the OIDC auth proxy sidecar).
    "controller", "webhook", "mtping", "jobsink", "requestreply", "apiserver_receive_adapter", "auth_proxy",
    # config/channels/in-memory-channel: imc-controller, imc-dispatcher (also its DISPATCHER_IMAGE).
    "in_memory/channel_controller", "in_memory/channel_dispatcher",
    # config/brokers/mt-channel-broker: mt-broker-controller, mt-broker-ingress, mt-broker-filter.
    "mtchannel_broker", "broker/ingress", "broker/filter",
)


@dataclass(frozen=True)
class ConfigDir:
    """A directory of Eventing's config/ as the release script resolves it."""

    path: str  # in the module
    recursive: bool  # ko resolve -R
    release_file: str  # the release asset it becomes


CONFIG_DIRS = (
    ConfigDir("config/core", True, "eventing-core.yaml"),
    ConfigDir("config/brokers/mt-channel-broker", False, "mt-channel-broker.yaml"),
    ConfigDir("config/channels/in-memory-channel", True, "in-memory-channel.yaml"),
)

# Symlinks in knative/eventing at knative-v1.22.2 under the three directories (a module zip drops
# them): (directory, path in it) -> path in the eventing module it points to.
_BROKER = "config/brokers/mt-channel-broker"
SYMLINKED: dict[tuple[str, str], str] = {
    ("config/core", "configmaps/eventing-integrations-images.yaml"):
        "third_party/eventing-integrations-latest/eventing-integrations-images.yaml",
    ("config/core", "configmaps/eventing-transformations-images.yaml"):
        "third_party/eventing-integrations-latest/eventing-transformations-images.yaml",
    **{(_BROKER, link): f"{_BROKER}/{target}" for link, target in {
        "200-channel-clusterrole.yaml": "roles/controller-clusterrole.yaml",
        "200-filter-clusterrole.yaml": "roles/filter-clusterrole.yaml",
        "200-filter-role.yaml": "roles/filter-role.yaml",
        "200-filter-serviceaccount.yaml": "roles/filter-serviceaccount.yaml",
        "200-ingress-clusterrole.yaml": "roles/ingress-clusterrole.yaml",
        "200-ingress-roles.yaml": "roles/ingress-role.yaml",
        "200-ingress-serviceaccount-oidc.yaml": "roles/ingress-serviceaccount-oidc.yaml",
        "200-ingress-serviceaccount.yaml": "roles/ingress-serviceaccount.yaml",
        "201-channel-clusterrolebinding.yaml": "roles/controller-clusterrolebinding.yaml",
        "201-filter-clusterrolebinding.yaml": "roles/filter-clusterrolebinding.yaml",
        "201-filter-rolebinding.yaml": "roles/filter-rolebinding.yaml",
        "201-ingress-clusterrolebinding.yaml": "roles/ingress-clusterrolebinding.yaml",
        "201-ingress-rolebinding.yaml": "roles/ingress-rolebinding.yaml",
        "500-broker-filter.yaml": "deployments/broker-filter.yaml",
        "500-broker-ingress.yaml": "deployments/broker-ingress.yaml",
        "500-mt-broker-controller.yaml": "deployments/controller.yaml",
        "hpa.yaml": "deployments/hpa.yaml",
    }.items()},
}

_KO_REFERENCE = re.compile(r"^ko://knative\.dev/eventing/cmd/([a-z0-9_/]+)$")
_YAML_SUFFIXES = (".yaml", ".yml", ".json")  # what ko resolve reads from a directory


class EventingError(KnativeError):
    """Eventing's binaries, modules or manifests are not as expected; the message says what to do."""


# Images ----------------------------------------------------------------------------------------


def binary_name(command: str) -> str:
    """bin/knative-eventing/<name> and /ko-app/<name>: the last element of the command's path."""
    return command.rsplit("/", 1)[-1]


def image_name(command: str) -> str:
    """The local image of a command, e.g. localhost/aifn/knative-eventing/broker/filter:v1.22."""
    if command not in COMMANDS:
        raise ValueError(f"unknown Knative Eventing command {command!r}; one of {', '.join(COMMANDS)}")
    return f"{IMAGE_REPOSITORY}/{command}:{TAG}"


def image_names() -> dict[str, str]:
    return {command: image_name(command) for command in COMMANDS}


def _zoneinfo() -> Path:
    try:
        goroot = subprocess.run(["go", "env", "GOROOT"], capture_output=True, text=True, check=True,
                                timeout=60).stdout.strip()
    except (FileNotFoundError, subprocess.CalledProcessError) as failed:
        raise EventingError("Go is not on PATH; its lib/time/zoneinfo.zip is the images' time-zone database") from failed
    path = Path(goroot) / "lib" / "time" / "zoneinfo.zip"
    if not path.is_file():
        raise EventingError(f"{path} is missing: the images need a time-zone database for PingSources' timezone")
    return path


def image_spec(command: str, bin_dir: Path = BIN, zoneinfo: Path | None = None) -> ImageSpec:
    """The image of one command: its static binary as /ko-app/<basename>, run as 65532, with tzdata."""
    name = binary_name(command)
    link = bin_dir / name
    if not link.exists():
        raise EventingError(f"{link} is missing; run `bash hack/build-eventing.sh`")
    binary = link.resolve()  # the cached build, not the link (a layer would hold the symlink)
    target = f"/ko-app/{name}"
    return ImageSpec(
        name=image_name(command),
        files=(ImageFile(binary, target, 0o755), ImageFile(zoneinfo or _zoneinfo(), ZONEINFO, 0o644)),
        entrypoint=(target,),
        user=NONROOT,
        env=("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/ko-app",
             f"KO_DATA_PATH={KO_DATA_PATH}", f"ZONEINFO={ZONEINFO}"),
        labels={
            "org.opencontainers.image.source": "https://github.com/knative/eventing",
            "org.opencontainers.image.version": f"knative-v{RELEASE}",
            "org.opencontainers.image.title": f"{EVENTING_MODULE}/cmd/{command}",
        },
    )


def build_images(bin_dir: Path = BIN, commands: Iterable[str] = COMMANDS) -> dict[str, Path]:
    """The OCI archives of the commands (cached by input hash), by command."""
    zoneinfo = _zoneinfo()
    return {command: build_archive(image_spec(command, bin_dir, zoneinfo)) for command in commands}


# Manifests -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ManifestFile:
    """One file as ko resolve would read it from a config directory, and where it really comes from."""

    directory: str  # one of CONFIG_DIRS' paths
    relative: str  # path under that directory
    source: Path


def config_files(tools_module: Path = TOOLS_MODULE) -> list[ManifestFile]:
    """The files of the three config directories, in the release's order, symlinked ones restored.

    Within a directory: ko's (lexical) order; -R directories with their subdirectories, the broker's
    directory only its top level (as generate-yamls.sh resolves it).
    """
    module = module_dir(EVENTING_MODULE, tools_module)
    found: list[ManifestFile] = []
    for config in CONFIG_DIRS:
        base = module / config.path
        if not base.is_dir():
            raise EventingError(f"{base} is missing: knative.dev/eventing's module has no {config.path}")
        pattern = base.rglob("*") if config.recursive else base.glob("*")
        files = {str(p.relative_to(base)): p for p in pattern
                 if p.is_file() and p.suffix in _YAML_SUFFIXES}
        for (directory, relative), target in SYMLINKED.items():
            if directory != config.path or relative in files:  # a later module zip may carry it
                continue
            source = module / target
            if not source.is_file():
                raise EventingError(f"{source} is missing: {directory}/{relative} points there")
            files[relative] = source
        found.extend(ManifestFile(config.path, relative, files[relative]) for relative in sorted(files))
    return found


def _resolve_reference(value: str) -> str:
    if not value.startswith("ko://"):
        return value
    match = _KO_REFERENCE.match(value)
    if not match or match.group(1) not in COMMANDS:
        raise EventingError(f"no local image for {value}: only {', '.join(COMMANDS)} are built here")
    return image_name(match.group(1))


def _set_version_labels(value: Any) -> None:
    """`app.kubernetes.io/version: devel` -> the release, wherever it is (the release script's sed also
    rewrites config-ping-defaults' annotation of that name)."""
    if isinstance(value, dict):
        if value.get("app.kubernetes.io/version") == "devel":
            value["app.kubernetes.io/version"] = RELEASE
        for item in value.values():
            _set_version_labels(item)
    elif isinstance(value, list):
        for item in value:
            _set_version_labels(item)


def resolve(doc: dict) -> dict:
    """One document with ko:// references, pull policies and version labels as installed here."""
    doc = resolve_ko_images(doc, _resolve_reference)
    _set_version_labels(doc)
    return doc


def manifests(tools_module: Path = TOOLS_MODULE, settings: bool = True) -> list[dict]:
    """Every object of eventing-core, mt-channel-broker and in-memory-channel, resolved for this cluster.

    With `settings`, the ConfigMaps of cluster_settings() carry that data (checked to be what
    Eventing ships: the README's examples need the shipped defaults, nothing else).
    """
    docs: list[dict] = []
    for item in config_files(tools_module):
        for doc in yaml.safe_load_all(item.source.read_text()):
            if not doc:
                continue
            if not isinstance(doc, dict) or "kind" not in doc:
                raise EventingError(f"{item.directory}/{item.relative} ({item.source}) holds a document that is no object")
            docs.append(resolve(doc))
    unresolved = sorted({ref for ref in strings(docs) if ref.startswith("ko://")})
    if unresolved:
        raise EventingError(f"unresolved image references: {unresolved}")
    if settings:
        _apply_settings(docs, cluster_settings())
    return docs


def _apply_settings(docs: list[dict], wanted: dict[str, dict[str, str]]) -> None:
    by_name = {doc["metadata"]["name"]: doc for doc in docs
               if doc.get("kind") == "ConfigMap" and doc["metadata"].get("namespace") == NAMESPACE}
    for name, data in wanted.items():
        if name not in by_name:
            raise EventingError(f"Eventing {RELEASE} has no ConfigMap {name} in {NAMESPACE}")
        by_name[name].setdefault("data", {}).update(data)


# Settings the README's examples need ------------------------------------------------------------

# examples/handlers/digit-events: a Trigger on the namespace's Broker `default`; digits-canary: a
# PingSource with `timezone: Europe/Berlin`. A Broker without a class annotation gets the cluster
# default (config-br-defaults) and its channel from config-br-default-channel. Knative 1.22 ships
# exactly what is needed (MTChannelBasedBroker over InMemoryChannel); they are stated here so the
# cluster does not depend on a default that a later release may change.
BROKER_CLASS = "MTChannelBasedBroker"


def cluster_settings() -> dict[str, dict[str, str]]:
    """ConfigMap data (namespace knative-eventing) this cluster installs: MT broker over InMemoryChannel."""
    return {
        "config-br-defaults": {"default-br-config": (
            "clusterDefault:\n"
            f"  brokerClass: {BROKER_CLASS}\n"
            "  apiVersion: v1\n"
            "  kind: ConfigMap\n"
            "  name: config-br-default-channel\n"
            f"  namespace: {NAMESPACE}\n"
            "  delivery:\n"
            "    retry: 10\n"
            "    backoffPolicy: exponential\n"
            "    backoffDelay: PT0.2S\n")},
        "config-br-default-channel": {"channel-template-spec": (
            "apiVersion: messaging.knative.dev/v1\n"
            "kind: InMemoryChannel\n")},
    }


def shipped_settings_differ(tools_module: Path = TOOLS_MODULE) -> dict[str, list[str]]:
    """ConfigMap -> keys whose shipped value (parsed as YAML) differs from cluster_settings()'s."""
    shipped = {doc["metadata"]["name"]: doc.get("data") or {}
               for doc in manifests(tools_module, settings=False) if doc.get("kind") == "ConfigMap"}
    differ: dict[str, list[str]] = {}
    for name, data in cluster_settings().items():
        for key, value in data.items():
            if yaml.safe_load(shipped.get(name, {}).get(key, "") or "null") != yaml.safe_load(value):
                differ.setdefault(name, []).append(key)
    return differ


LOCAL_CPU_REQUEST = "10m"


def with_local_cpu_requests(docs: Iterable[dict], cpu: str = LOCAL_CPU_REQUEST) -> list[dict]:
    """The workloads with each container's CPU request set to `cpu` where it had one (limits kept).

    The local cluster's two nodes share the host's 2 vCPUs and every Eventing pod lands on the CPU
    worker; Eventing's 625m of requests (750m while a PingSource exists) would leave less than the
    `cpu: "1"` an example function asks for. Requests are the scheduler's bookkeeping here, not a
    reservation any pod can use, so this cluster keeps them small (docs/eventing.md). A request is
    lowered rather than removed: Kubernetes would default a removed request to the CPU limit.
    """
    out = []
    for doc in docs:
        if doc.get("kind") in ("Deployment", "StatefulSet", "DaemonSet"):
            doc = copy.deepcopy(doc)
            pod = doc["spec"]["template"]["spec"]
            for container in [*pod.get("initContainers", []), *pod.get("containers", [])]:
                resources = container.get("resources") or {}
                if "cpu" in (resources.get("requests") or {}) or "cpu" in (resources.get("limits") or {}):
                    resources.setdefault("requests", {})["cpu"] = cpu
        out.append(doc)
    return out


def default_broker(namespace: str, name: str = "default") -> dict:
    """The Broker the event examples name (`broker: default`), of the cluster's default class."""
    return {
        "apiVersion": "eventing.knative.dev/v1",
        "kind": "Broker",
        "metadata": {"name": name, "namespace": namespace},
    }


def deployments(docs: Iterable[dict]) -> list[tuple[str, str]]:
    """(kind, name) of every workload in `docs` (what an install waits for)."""
    return [(doc["kind"], doc["metadata"]["name"]) for doc in docs
            if doc.get("kind") in ("Deployment", "StatefulSet", "DaemonSet")]
