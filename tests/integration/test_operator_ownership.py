"""The operator never writes or deletes an object its function does not control (issue 14, security 3).

A user's ConfigMap, PingSource or Trigger that holds the name of one of a function's children is
left exactly as it is (same resourceVersion, no ownerReference, no `aifn-operator` field manager),
and the function says why it is not Ready (`NotOwned`, naming the object). Two functions whose
readable child names are equal (`a` + schedule `b-c`, `a-b` + schedule `c`) each get their own
PingSource. The uid preconditions of apply.py are checked against the real apiserver too.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from kubernetes import client

from aifunction_operator.controller.kube_client import CONFIGMAPS, ApiError, KubeClient, load_api_client
from aifunction_operator.controller.act import replaced
from aifunction_operator.render.metadata import child_name
from support.kube_client import TestClient, condition, function
from support.processes import wait_until

from .test_operator_triggers import CODE, EVENTING, function_where, get_configmap, get_eventing, lambda_spec, state

pytestmark = pytest.mark.integration
PROMPT = 10.0
RETRY = 40.0  # NotOwned is looked at again every 15 s (no watch sees someone else's object go)
THEIR_CODE = "def handle(event, context):\n    return 'theirs'\n"


def untouched(obj: dict[str, Any] | None, before: dict[str, Any]) -> None:
    """`obj` is the very object created as `before`, unchanged and not adopted."""
    assert obj is not None, "the user's object was deleted"
    meta = obj["metadata"]
    assert meta["uid"] == before["metadata"]["uid"] and meta["resourceVersion"] == before["metadata"]["resourceVersion"], "the user's object was written"
    assert not meta.get("ownerReferences") and "aifn-operator" not in {m.get("manager") for m in meta.get("managedFields") or []}


def users_configmap(kube: TestClient, namespace: str, name: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    body = client.V1ConfigMap(metadata=client.V1ObjectMeta(name=name, labels=labels), data={"app.py": THEIR_CODE})
    kube.core.create_namespaced_config_map(namespace, body)
    found = get_configmap(kube, namespace, name)
    assert found is not None
    return found


def users_eventing(kube: TestClient, kind: str, namespace: str, name: str) -> dict[str, Any]:
    group, version, plural = EVENTING[kind]
    spec = {"broker": "default", "subscriber": {"uri": "http://their-service.example"}} if kind == "Trigger" else {"schedule": "* * * * *", "sink": {"uri": "http://their-service.example"}}
    return kube.custom.create_namespaced_custom_object(group, version, namespace, plural, {"apiVersion": f"{group}/{version}", "kind": kind, "metadata": {"name": name}, "spec": spec})


@pytest.mark.parametrize("labels", [None, {"aifn.dev/function": "fn", "app.kubernetes.io/managed-by": "aifn-operator"}], ids=["plain", "with-our-labels"])
def test_a_users_configmap_under_the_handler_name_is_left_untouched_and_reported(labels: dict[str, str] | None, kube: TestClient, namespace: str, start_operator: Any) -> None:
    """The issue author's check: the function is not Ready, says why, and nothing of theirs is written."""
    name = child_name("fn", "handler")
    theirs = users_configmap(kube, namespace, name, labels)
    op = start_operator()
    kube.create_function(namespace, function("fn", lambda_spec(schedules=[], events=[])))
    fn = function_where(kube, namespace, "fn", lambda f: state(f, "Ready") == ("False", "NotOwned"), "Ready False NotOwned")
    message = condition(fn, "ServiceReady")["message"]
    assert state(fn, "ServiceReady") == ("False", "NotOwned") and f"ConfigMap {name} already exists and is not controlled by this AIFunction" in message, message
    assert condition(fn, "Ready")["message"] == message
    time.sleep(2)  # passes triggered by the function's own status writes have run
    untouched(get_configmap(kube, namespace, name), theirs)
    assert kube.get_service(namespace, "fn") is None, "no Service may mount someone else's ConfigMap as code"
    assert 'aifn_writes_total{kind="child_apply"}' not in op.metrics()

    # Once the name is free, the retry creates the function's own ConfigMap and Service.
    kube.core.delete_namespaced_config_map(name, namespace)
    ours = wait_until("the function's own ConfigMap", lambda: (c := get_configmap(kube, namespace, name)) and c["metadata"].get("ownerReferences") and c, RETRY, diagnose=op.log_tail)
    assert ours["data"] == {"app.py": CODE}
    wait_until("the Service", lambda: kube.get_service(namespace, "fn"), PROMPT, diagnose=op.log_tail)


def test_a_users_configmap_named_like_the_old_handler_name_is_never_touched(kube: TestClient, namespace: str, start_operator: Any) -> None:
    """The digit-events example told users to create `<fn>-handler` themselves and mount it; a later
    switch to inline code (and back) must neither overwrite nor delete it."""
    theirs = users_configmap(kube, namespace, "fn-handler")
    start_operator()
    kube.create_function(namespace, function("fn", lambda_spec(schedules=[], events=[], handler={"entrypoint": "app:handle", "configMap": {"name": "fn-handler", "key": "app.py"}})))
    wait_until("the Service", lambda: kube.get_service(namespace, "fn"), PROMPT)
    kube.patch_function(namespace, "fn", {"spec": {"handler": {"configMap": None, "code": CODE}}})
    wait_until("the operator's own ConfigMap", lambda: get_configmap(kube, namespace, child_name("fn", "handler")), PROMPT)
    kube.patch_function(namespace, "fn", {"spec": {"handler": {"code": None, "configMap": {"name": "fn-handler", "key": "app.py"}}}})
    wait_until("the operator's ConfigMap pruned", lambda: get_configmap(kube, namespace, child_name("fn", "handler")) is None, PROMPT)
    untouched(get_configmap(kube, namespace, "fn-handler"), theirs)


@pytest.mark.parametrize("kind", ["PingSource", "Trigger"])
def test_a_users_pingsource_or_trigger_under_a_child_name_is_left_untouched_and_reported(kind: str, kube: TestClient, namespace: str, start_operator: Any) -> None:
    name = child_name("fn", "nightly" if kind == "PingSource" else "uploads")
    theirs = users_eventing(kube, kind, namespace, name)
    start_operator()
    kube.create_function(namespace, function("fn", lambda_spec()))
    fn = function_where(kube, namespace, "fn", lambda f: state(f, "TriggersReady") == ("False", "NotOwned"), "TriggersReady False NotOwned")
    assert f"{kind} {name} already exists and is not controlled by this AIFunction" in condition(fn, "TriggersReady")["message"]
    assert state(fn, "Ready") == ("False", "NotOwned")
    wait_until("the Service (the function still serves requests)", lambda: kube.get_service(namespace, "fn"), PROMPT)
    time.sleep(2)
    untouched(get_eventing(kube, kind, namespace, name), theirs)

    group, version, plural = EVENTING[kind]
    kube.custom.delete_namespaced_custom_object(group, version, namespace, plural, name)
    wait_until(f"the function's own {kind}", lambda: (o := get_eventing(kube, kind, namespace, name)) and o["metadata"].get("ownerReferences"), RETRY)


def test_two_functions_whose_readable_child_names_are_equal_do_not_fight(kube: TestClient, namespace: str, start_operator: Any) -> None:
    """`a` + schedule `b-c` and `a-b` + schedule `c` both used to own PingSource `a-b-c`."""
    start_operator()
    for fn, schedule in (("a", "b-c"), ("a-b", "c")):
        kube.create_function(namespace, function(fn, lambda_spec(schedules=[{"name": schedule, "cron": "0 3 * * *"}], events=[], handler={"entrypoint": "app:handle", "image": "reg/h:1"})))
    group, version, plural = EVENTING["PingSource"]

    def pings() -> dict[str, dict[str, Any]]:
        return {p["metadata"]["name"]: p for p in kube.custom.list_namespaced_custom_object(group, version, namespace, plural)["items"]}

    found = wait_until("two PingSources", lambda: len(p := pings()) == 2 and p, PROMPT)
    owners = {name: p["metadata"]["ownerReferences"][0]["name"] for name, p in found.items()}
    assert owners == {child_name("a", "b-c"): "a", child_name("a-b", "c"): "a-b"}
    time.sleep(3)  # two functions fighting over one object rewrite it on every pass
    assert {name: p["metadata"]["resourceVersion"] for name, p in pings().items()} == {name: p["metadata"]["resourceVersion"] for name, p in found.items()}


def test_uid_preconditions_refuse_a_replaced_object(control_plane: Any, kube: TestClient, namespace: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """apply.py's contract with the real apiserver: an apply or delete meant for one object does not
    touch another that took its name, and does not create one where the name is free."""
    monkeypatch.setenv("KUBECONFIG", str(control_plane.kubeconfig))
    api = KubeClient(load_api_client())
    ours = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm", "namespace": namespace}, "data": {"k": "ours"}}
    first = api.apply(ours)
    kube.core.delete_namespaced_config_map("cm", namespace)
    theirs = users_configmap(kube, namespace, "cm")

    with pytest.raises(ApiError) as refused:
        api.apply(ours, uid=first["metadata"]["uid"])
    assert replaced(refused.value), refused.value
    assert api.delete(CONFIGMAPS, namespace, "cm", uid=first["metadata"]["uid"]) is False
    untouched(get_configmap(kube, namespace, "cm"), theirs)
    found = api.find(CONFIGMAPS, namespace, "cm")
    assert found is not None and found["kind"] == "ConfigMap" and found["metadata"]["uid"] == theirs["metadata"]["uid"]
    assert api.find(CONFIGMAPS, namespace, "absent") is None

    with pytest.raises(ApiError) as gone:  # an apply meant for an object that no longer exists creates nothing
        api.apply({**ours, "metadata": {**ours["metadata"], "name": "free"}}, uid=first["metadata"]["uid"])
    assert gone.value.status == 409 and gone.value.transient and api.find(CONFIGMAPS, namespace, "free") is None
    created = api.apply({**ours, "metadata": {**ours["metadata"], "name": "free"}})
    assert api.delete(CONFIGMAPS, namespace, "free", uid=created["metadata"]["uid"]) is True
