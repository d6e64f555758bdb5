"""An in-memory stand-in for the operator's `KubeClient`, for the reconcile table (tests/unit/test_reconcile_table.py).

A unit-test double, like the fake clientsets Knative's reconciler TableTests use: it keeps
objects in a dict and records every request, so a case can state which writes a pass makes.
It is not a substitute for the API server: the same passes run against a real kube-apiserver
in tests/integration/test_operator*.py. What it models is what reconcile relies on: apply
creates or merges and keeps the server's status, uid preconditions, label-selected lists,
unserved kinds answering 404, and injected failures.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Mapping
from typing import Any

from aifunction_operator.constants import FIELD_MANAGER
from aifunction_operator.controller.kube_client import ApiError, Resource, resource_of

Manifest = dict[str, Any]
_uids = itertools.count(1)


class FakeKubeClient:
    """Objects by (plural, namespace, name); `actions` lists the requests as ("verb", "Kind/name" or plural)."""

    def __init__(self, *objects: Manifest, unserved: tuple[str, ...] = (), failures: Mapping[tuple[str, str], ApiError] | None = None) -> None:
        self.objects: dict[tuple[str, str | None, str], Manifest] = {}
        self.unserved = set(unserved)  # apiVersions the cluster does not serve (e.g. Eventing's)
        self.failures = dict(failures or {})  # ("apply", "Kind/name") -> the error that request gets
        self.actions: list[tuple[str, str]] = []
        self.events: list[tuple[str, str, str]] = []
        self.status_writes: list[Manifest] = []
        for obj in objects:
            self.put(obj)

    # --- setup and inspection -------------------------------------------------------------
    def put(self, obj: Manifest) -> Manifest:
        """Store an object as the server would hold it (a uid and resourceVersion are added if missing)."""
        stored = copy.deepcopy(obj)
        meta = stored.setdefault("metadata", {})
        meta.setdefault("uid", f"uid-{next(_uids)}")
        meta.setdefault("resourceVersion", "1")
        self.objects[self._key(resource_of(stored), meta.get("namespace"), meta["name"])] = stored
        return copy.deepcopy(stored)

    def writes(self) -> list[tuple[str, str]]:
        """The requests that change something, in order."""
        return [a for a in self.actions if a[0] not in {"get", "list", "find", "serves"}]

    # --- the KubeClient verbs reconcile uses ----------------------------------------------------
    def get(self, resource: Resource, namespace: str | None, name: str) -> Manifest | None:
        self.actions.append(("get", f"{resource.plural}/{name}"))
        self._served(resource.api_version)
        found = self.objects.get(self._key(resource, namespace, name))
        return copy.deepcopy(found) if found is not None else None

    def list(self, resource: Resource, namespace: str | None, *, label_selector: str | None = None) -> list[Manifest]:
        self.actions.append(("list", resource.plural))
        self._served(resource.api_version)
        wanted = dict(term.split("=", 1) for term in (label_selector or "").split(",") if term)
        return [copy.deepcopy(obj) for (plural, ns, _), obj in sorted(self.objects.items())
                if plural == resource.plural and ns == namespace
                and all((obj["metadata"].get("labels") or {}).get(k) == v for k, v in wanted.items())]

    def find(self, resource: Resource, namespace: str | None, name: str) -> Manifest | None:
        self.actions.append(("find", f"{resource.plural}/{name}"))
        self._served(resource.api_version)
        found = self.objects.get(self._key(resource, namespace, name))
        return copy.deepcopy(found) if found is not None else None

    def serves(self, api_version: str) -> bool:
        self.actions.append(("serves", api_version))
        return api_version not in self.unserved

    def apply(self, obj: Manifest, *, force: bool = True, uid: str | None = None) -> Manifest:
        name = f"{obj['kind']}/{obj['metadata']['name']}"
        self.actions.append(("apply", name))
        self._fail("apply", name)
        resource = resource_of(obj)
        self._served(resource.api_version)
        key = self._key(resource, obj["metadata"].get("namespace"), obj["metadata"]["name"])
        live = self.objects.get(key)
        if uid is not None and (live is None or live["metadata"]["uid"] != uid):
            if live is None:
                raise ApiError(409, f"Precondition failed: UID in precondition: {uid}, UID in object meta: ")
            raise ApiError(422, f"{name} is invalid: metadata.uid: Invalid value: {uid!r}: field is immutable")
        merged = copy.deepcopy(obj)
        meta = merged["metadata"]
        meta["uid"] = live["metadata"]["uid"] if live else f"uid-{next(_uids)}"
        meta["resourceVersion"] = str(int(live["metadata"]["resourceVersion"]) + 1) if live else "1"
        meta["managedFields"] = [{"manager": FIELD_MANAGER}]
        if live and "status" in live:
            merged["status"] = live["status"]
        self.objects[key] = merged
        return copy.deepcopy(merged)

    def delete(self, resource: Resource, namespace: str | None, name: str, *, uid: str | None = None) -> bool:
        self.actions.append(("delete", f"{resource.plural}/{name}"))
        key = self._key(resource, namespace, name)
        live = self.objects.get(key)
        if live is None or (uid and live["metadata"]["uid"] != uid):
            return False
        del self.objects[key]
        return True

    def merge_patch(self, obj: Mapping[str, Any], patch: Mapping[str, Any]) -> Manifest:
        name = f"{obj['kind']}/{obj['metadata']['name']}"
        self.actions.append(("patch", name))
        self._fail("patch", name)
        key = self._key(resource_of(obj), obj["metadata"].get("namespace"), obj["metadata"]["name"])
        live = self.objects.get(key)
        want_uid = (patch.get("metadata") or {}).get("uid")
        if live is None or (want_uid and live["metadata"]["uid"] != want_uid):
            raise ApiError(409 if live else 404, f"{name}: precondition failed")
        annotations = (patch.get("metadata") or {}).get("annotations") or {}
        live["metadata"].setdefault("annotations", {}).update(annotations)
        return copy.deepcopy(live)

    def patch_status(self, resource: Resource, namespace: str, name: str, status: Mapping[str, Any]) -> Manifest:
        self.actions.append(("status", f"{resource.plural}/{name}"))
        self._fail("status", f"{resource.plural}/{name}")
        self.status_writes.append(dict(status))
        live = self.objects.get(self._key(resource, namespace, name))
        if live is not None:
            live["status"] = dict(status)
        return copy.deepcopy(live or {})

    def post_event(self, owner: Mapping[str, Any], *, type_: str, reason: str, message: str) -> Manifest:
        self.actions.append(("event", reason))
        self.events.append((type_, reason, message))
        return {}

    # --- helpers ----------------------------------------------------------------------------
    def _key(self, resource: Resource, namespace: str | None, name: str) -> tuple[str, str | None, str]:
        return (resource.plural, namespace if resource.namespaced else None, name)

    def _served(self, api_version: str) -> None:
        if api_version in self.unserved:
            raise ApiError(404, "the server could not find the requested resource")

    def _fail(self, verb: str, name: str) -> None:
        error = self.failures.get((verb, name))
        if error is not None:
            raise error
