"""Knative Serving 1.23 for the local cluster: images built here and Knative's own manifests, resolved.

The five core commands (controller, webhook, autoscaler, activator, queue) are built from the Go
module `knative.dev/serving` v0.50.0 (Knative 1.23.0) by hack/build-knative.sh into bin/knative/.
Each becomes an image the way `ko` makes Knative's release images: the static binary at
/ko-app/<name> as the entrypoint, `KO_DATA_PATH=/var/run/ko`, and a non-root numeric user, 65532
(the `nonroot` user of ko's base; Knative's Deployments say `runAsNonRoot: true` and leave the uid to
the image, so it must be numeric for the kubelet to verify it). Nothing else is in the image: no
/etc/passwd, no CA bundle, no shell. Serving v0.50.0 has no `kodata` directories and reads no
KO_DATA_PATH file (its `changeset` comes from the Go build info), so /var/run/ko stays empty.

The manifests are the module's own `config/core/` (what `ko resolve -R -f config/core/` turns into
the release's serving-core.yaml), with:
- the files that are symlinks in the knative/serving repository restored from the modules they
  point into: a module zip drops symlinks, so the Go module of serving v0.50.0 lacks the networking
  CRDs (Certificate, Ingress, ServerlessService, ClusterDomainClaim), `config-network` and the
  caching `Image` CRD (checked against the tag knative-v1.23.0);
- every `ko://knative.dev/serving/cmd/<name>` replaced by `localhost/aifn/knative-serving/<name>:v1.23`
  (the Deployments' containers, config-deployment's `queue-sidecar-image`, the queue-proxy `Image`),
  `imagePullPolicy: IfNotPresent` on those containers (no node ever pulls);
- `app.kubernetes.io/version: devel` set to the release's "1.23.0", as Knative's release script does;
- Revisions name local images `dev.local/...` (support.cluster.stack.revision_image): Knative's
  controller resolves each Revision's image tag to a digest unless the registry is in
  config-deployment's `registries-skipping-tag-resolving` (default kind.local, ko.local, dev.local),
  and go-containerregistry reads `localhost/aifn/x` as docker.io's, so `localhost` in that list
  would not help.

`readme_settings()` reads the ConfigMap data the README tells cluster admins to set (section "What the
cluster needs (Knative settings)"), so a test that applies it tests the README.
"""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .images import ImageFile, ImageSpec, build_archive

ROOT = Path(__file__).resolve().parents[3]
TOOLS_MODULE = ROOT / "hack" / "tools" / "knative-serving"
BIN = ROOT / "bin" / "knative"
README = ROOT / "README.md"

SERVING_MODULE = "knative.dev/serving"
RELEASE = "1.23.0"  # knative.dev/serving v0.50.0 = knative-v1.23.0
TAG = "v1.23"
NAMESPACE = "knative-serving"
COMPONENTS = ("controller", "webhook", "autoscaler", "activator", "queue")
NONROOT = "65532:65532"  # ko's nonroot base user; Knative's manifests only say runAsNonRoot
KO_DATA_PATH = "/var/run/ko"
IMAGE_REPOSITORY = "localhost/aifn/knative-serving"
# Registries whose tags Knative's controller uses as they are (config-deployment): Knative's default,
# which holds dev.local, the name Revisions use for this cluster's images (stack.revision_image).
SKIP_TAG_RESOLVING = ("kind.local", "ko.local", "dev.local")

# config/core files that are symlinks in knative/serving at knative-v1.23.0 (dropped from the module
# zip): path in serving's config/core -> (module, path in that module).
SYMLINKED = {
    "300-imagecache.yaml": ("knative.dev/caching", "config/image.yaml"),
    "300-resources/certificate.yaml": ("knative.dev/networking", "config/certificate.yaml"),
    "300-resources/domain-claim.yaml": ("knative.dev/networking", "config/domain-claim.yaml"),
    "300-resources/ingress.yaml": ("knative.dev/networking", "config/ingress.yaml"),
    "300-resources/serverlessservice.yaml": ("knative.dev/networking", "config/serverlessservice.yaml"),
    "configmaps/network.yaml": ("knative.dev/networking", "config/config-network.yaml"),
}

_KO_REFERENCE = re.compile(r"^ko://knative\.dev/serving/cmd/([a-z-]+)$")


class KnativeError(RuntimeError):
    """Knative's binaries, modules or manifests are not as expected; the message says what to do."""


# Images ----------------------------------------------------------------------------------------


def image_name(component: str) -> str:
    """The local image of a core component, e.g. localhost/aifn/knative-serving/queue:v1.23."""
    if component not in COMPONENTS:
        raise ValueError(f"unknown Knative Serving component {component!r}; one of {', '.join(COMPONENTS)}")
    return f"{IMAGE_REPOSITORY}/{component}:{TAG}"


def image_names() -> dict[str, str]:
    return {component: image_name(component) for component in COMPONENTS}


def image_spec(component: str, bin_dir: Path = BIN) -> ImageSpec:
    """The image of one component: its static binary as /ko-app/<component>, run as 65532."""
    link = bin_dir / component
    if not link.exists():
        raise KnativeError(f"{link} is missing; run `bash hack/build-knative.sh`")
    binary = link.resolve()  # the cached build, not the link (a layer would hold the symlink)
    target = f"/ko-app/{component}"
    return ImageSpec(
        name=image_name(component),
        files=(ImageFile(binary, target, 0o755),),
        entrypoint=(target,),
        user=NONROOT,
        env=("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/ko-app",
             f"KO_DATA_PATH={KO_DATA_PATH}"),
        labels={
            "org.opencontainers.image.source": "https://github.com/knative/serving",
            "org.opencontainers.image.version": f"knative-v{RELEASE}",
            "org.opencontainers.image.title": f"{SERVING_MODULE}/cmd/{component}",
        },
    )


def build_images(bin_dir: Path = BIN) -> dict[str, Path]:
    """The OCI archives of the five components (cached by input hash), by component."""
    return {component: build_archive(image_spec(component, bin_dir)) for component in COMPONENTS}


# Manifests -------------------------------------------------------------------------------------


def module_dir(module: str = SERVING_MODULE, tools_module: Path = TOOLS_MODULE) -> Path:
    """Where the Go module cache holds `module` at the version the tools module requires."""
    try:
        result = subprocess.run(["go", "list", "-m", "-f", "{{.Dir}}", module], cwd=tools_module,
                                capture_output=True, text=True, check=True, timeout=120,
                                env={**os.environ, "GOFLAGS": "-mod=mod"})
    except FileNotFoundError as missing:
        raise KnativeError("Go is not on PATH; it locates Knative's manifests in the module cache") from missing
    except subprocess.CalledProcessError as failed:
        raise KnativeError(f"go list -m {module} in {tools_module} failed: {failed.stderr.strip()}") from failed
    path = Path(result.stdout.strip())
    if not path.is_dir():  # listed but not downloaded
        subprocess.run(["go", "mod", "download", module], cwd=tools_module, check=True, timeout=600)
    return path


@dataclass(frozen=True)
class ManifestFile:
    """One file of config/core, as ko resolve -R would read it, and where it really comes from."""

    relative: str  # path under config/core/
    source: Path


def core_files(tools_module: Path = TOOLS_MODULE) -> list[ManifestFile]:
    """The YAML files of serving's config/core/ in ko's (lexical) order, symlinked ones restored."""
    core = module_dir(SERVING_MODULE, tools_module) / "config" / "core"
    files = {str(p.relative_to(core)): p for p in core.rglob("*.yaml")}
    modules: dict[str, Path] = {}
    for relative, (module, path) in SYMLINKED.items():
        if relative in files:  # a later module zip may carry it
            continue
        if module not in modules:
            modules[module] = module_dir(module, tools_module)
        source = modules[module] / path
        if not source.is_file():
            raise KnativeError(f"{source} is missing: {relative} of serving's config/core points there")
        files[relative] = source
    return [ManifestFile(relative, files[relative]) for relative in sorted(files)]


def _walk_strings(value: Any, replace) -> Any:
    if isinstance(value, dict):
        return {key: _walk_strings(item, replace) for key, item in value.items()}
    if isinstance(value, list):
        return [_walk_strings(item, replace) for item in value]
    if isinstance(value, str):
        return replace(value)
    return value


def _resolve_reference(value: str) -> str:
    if not value.startswith("ko://"):
        return value
    match = _KO_REFERENCE.match(value)
    if not match or match.group(1) not in COMPONENTS:
        raise KnativeError(f"no local image for {value}: only {', '.join(COMPONENTS)} are built here")
    return image_name(match.group(1))


def _set_version_labels(value: Any) -> None:
    if isinstance(value, dict):
        labels = value.get("labels")
        if isinstance(labels, dict) and labels.get("app.kubernetes.io/version") == "devel":
            labels["app.kubernetes.io/version"] = RELEASE
        for item in value.values():
            _set_version_labels(item)
    elif isinstance(value, list):
        for item in value:
            _set_version_labels(item)


def _pod_spec(doc: dict) -> dict | None:
    if doc.get("kind") in ("Deployment", "DaemonSet", "StatefulSet", "Job"):
        return doc.get("spec", {}).get("template", {}).get("spec")
    return None


def resolve_ko_images(doc: dict, resolve_reference: Callable[[str], str]) -> dict:
    """A copy of `doc` with every ko:// reference replaced by `resolve_reference`, and imagePullPolicy
    IfNotPresent on the containers whose image was one (no node ever pulls a local image)."""
    resolved = _walk_strings(copy.deepcopy(doc), resolve_reference)
    pod = _pod_spec(resolved)
    if pod is not None:
        before = _pod_spec(doc) or {}
        for kind in ("initContainers", "containers"):
            for container, was in zip(pod.get(kind, []), before.get(kind, []), strict=True):
                if str(was.get("image", "")).startswith("ko://"):
                    container["imagePullPolicy"] = "IfNotPresent"
    return resolved


def resolve(doc: dict) -> dict:
    """One document of config/core with ko:// references, pull policies and labels as installed here."""
    doc = resolve_ko_images(doc, _resolve_reference)
    _set_version_labels(doc)
    if doc.get("kind") == "ConfigMap" and doc["metadata"]["name"] == "config-deployment":
        doc.setdefault("data", {})["registries-skipping-tag-resolving"] = ",".join(SKIP_TAG_RESOLVING)
    return doc


def core_manifests(tools_module: Path = TOOLS_MODULE) -> list[dict]:
    """Every object of serving's config/core/, resolved for this cluster, in ko's file order."""
    docs: list[dict] = []
    for item in core_files(tools_module):
        for doc in yaml.safe_load_all(item.source.read_text()):
            if doc:
                docs.append(resolve(doc))
    unresolved = [ref for ref in strings(docs) if ref.startswith("ko://")]
    if unresolved:
        raise KnativeError(f"unresolved image references: {sorted(set(unresolved))}")
    return docs


def strings(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for item in value.values():
            yield from strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)
    elif isinstance(value, str):
        yield value


def split_crds(docs: Iterable[dict]) -> tuple[list[dict], list[dict]]:
    """(CustomResourceDefinitions, everything else): CRDs must be Established before their objects."""
    crds, rest = [], []
    for doc in docs:
        (crds if doc.get("kind") == "CustomResourceDefinition" else rest).append(doc)
    return crds, rest


def dump(docs: Iterable[dict]) -> str:
    """A multi-document YAML stream for `kubectl apply -f -`."""
    return yaml.safe_dump_all(list(docs), sort_keys=False)


# Settings the README gives cluster admins -------------------------------------------------------

README_SECTION = "What the cluster needs (Knative settings)"


def _readme_section(readme: Path = README) -> str:
    text = readme.read_text()
    start = text.find(f"## {README_SECTION}")
    if start < 0:
        raise KnativeError(f'{readme} has no section "## {README_SECTION}"')
    end = text.find("\n## ", start + 3)
    return text[start:end if end >= 0 else len(text)]


def _configmap_keys(tools_module: Path = TOOLS_MODULE) -> dict[str, str]:
    """key -> ConfigMap, from the `_example` blocks of Knative's own ConfigMaps in config/core."""
    owners: dict[str, str] = {}
    for item in core_files(tools_module):
        if not item.relative.startswith("configmaps/"):
            continue
        for doc in yaml.safe_load_all(item.source.read_text()):
            if not doc or doc.get("kind") != "ConfigMap":
                continue
            example = yaml.safe_load((doc.get("data") or {}).get("_example", "")) or {}
            for key in example:
                owners.setdefault(str(key), doc["metadata"]["name"])
    return owners


def readme_settings(readme: Path = README, tools_module: Path = TOOLS_MODULE) -> dict[str, dict[str, str]]:
    """ConfigMap data (namespace knative-serving) that the README tells cluster admins to set.

    - `config-features`: the JSON of the section's `kubectl patch configmap/config-features` command;
    - every other `` `key: "value"` `` the section names, in the ConfigMap of Knative's that documents
      the key in its `_example` (e.g. `enable-scale-to-zero` -> config-autoscaler).
    Keys the section names without a value (e.g. "a larger max-revision-timeout-seconds") are not set.
    """
    section = _readme_section(readme)
    settings: dict[str, dict[str, str]] = {}
    patch = re.search(r"kubectl patch configmap/([a-z-]+) -n knative-serving --type merge -p '(\{.*?\})'",
                      section, flags=re.DOTALL)
    if not patch:
        raise KnativeError(f'README section "{README_SECTION}" has no `kubectl patch configmap/...` command')
    settings[patch.group(1)] = {key: str(value) for key, value in json.loads(patch.group(2))["data"].items()}
    owners = _configmap_keys(tools_module)
    for key, value in re.findall(r'`([a-z0-9][a-z0-9.-]*): "([^"`]*)"`', section):
        if key not in owners:
            raise KnativeError(f"README names {key!r}, which no ConfigMap of Knative {RELEASE} documents")
        settings.setdefault(owners[key], {})[key] = value
    return settings


# What this cluster sets beside the README: URLs http://<name>.<namespace>.example.com, routed by
# the Host header (as tests/e2e/cluster.py does on kind); the ingress class is the networking layer's.
CLUSTER_DOMAIN = "example.com"


def cluster_settings(ingress_class: str, readme: Path = README,
                     tools_module: Path = TOOLS_MODULE) -> dict[str, dict[str, str]]:
    """The README's settings plus config-network's ingress class and config-domain of this cluster."""
    settings = readme_settings(readme, tools_module)
    settings.setdefault("config-network", {})["ingress-class"] = ingress_class
    settings.setdefault("config-domain", {})[CLUSTER_DOMAIN] = ""
    return settings
