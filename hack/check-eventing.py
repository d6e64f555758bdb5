#!/usr/bin/env python3
"""Checks Knative Eventing's resolved manifests, images and binaries without a cluster (tests/support/cluster/eventing.py).

1. builds the twelve images as OCI archives (cached) and prints their names and sizes;
2. runs each binary briefly (`-h`) to show it links and starts, or names the environment it lacks;
3. everything else inside a private network namespace (`unshare --net`: no host port is bound,
   the running cluster is not touched):
   - a throwaway control plane; the CRDs and the namespace applied for real, then `kubectl apply
     --server-side --dry-run=server` of each other object;
   - with --live, everything applied for real and the components run **from their images**: each
     image's layer unpacked and the binary run in it with `chroot --userspec=65532:65532`, with the
     image's Env and the Deployment's (no /etc/passwd, no /usr/share/zoneinfo, no CA bundle: what a
     pod of that image sees, less the service-account mount; the admin kubeconfig at /kubeconfig).
     The Services of the webhooks, the IMC dispatcher and the broker's ingress and filter point at
     these processes (EndpointSlice + Endpoints, --enable-aggregator-routing). Eventing's webhook
     runs first without the image's ZONEINFO (a PingSource with `timezone` must be refused: why the
     images carry Go's zoneinfo.zip), then as the image sets it; the operator's renderings of the
     README's event examples (digit-events' Trigger, digits-canary's PingSource) and a Broker
     `default` are dry-run through it, then created for real; eventing-controller, imc-controller
     (its own webhook on another port) and mt-broker-controller run together for a while (their
     error lines, the Broker's, Trigger's and PingSource's conditions, what they created); then the
     data plane (broker ingress and filter, IMC dispatcher, mtping) one at a time with its
     Deployment's environment, a CloudEvent POSTed to the broker's ingress;
   - with --flow (and --live), the event path for real: each Service's name on an address of its
     own (/etc/hosts in every image root), port 80 DNAT-ed with iptables (this namespace only) to the
     process behind it, as kube-proxy would; Serving's Service CRD and a Knative Service `digit-events`
     whose status says Ready at http://digit-events.default.svc.cluster.local (a Python server here);
     the webhook, the three controllers, the IMC dispatcher and the broker's ingress and filter run
     together from their images, each as its Deployment's ServiceAccount (client certificates for
     system:serviceaccount:knative-eventing:<name>, so the manifests' RBAC applies); once the
     Trigger is Ready, a CloudEvent POSTed to the ingress must reach the subscriber.

Needs `make tools` (kubectl, kube-apiserver, etcd), `bash hack/build-eventing.sh`, and root.
Exit 1 on any unexpected error. Usage: .venv/bin/python hack/check-eventing.py [--live [--flow]] [--seconds N]
"""

from __future__ import annotations

import argparse
import http.server
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from check_common import error_lines, stop  # noqa: E402
from support.cluster import eventing, knative  # noqa: E402
from support.controlplane import ControlPlane, Network  # noqa: E402

LIVE_ADDRESS = "10.99.0.1"  # on the private namespace's loopback: an endpoint address may not be 127/8
EXAMPLES = ("examples/handlers/digit-events/digit-events.yaml", "examples/handlers/digits-canary/digits-canary.yaml")
WEBHOOKS = {  # Service -> (the command serving it, its WEBHOOK_NAME, port on the host)
    "eventing-webhook": ("webhook", "eventing-webhook", 8443),
    "inmemorychannel-webhook": ("in_memory/channel_controller", "inmemorychannel-webhook", 8444),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--live", action="store_true", help="also run webhook and controllers against a control plane")
    parser.add_argument("--seconds", type=int, default=30, help="how long the controllers run together (--live)")
    parser.add_argument("--flow", action="store_true",
                        help="with --live, also send a CloudEvent through ingress -> channel -> filter -> a subscriber")
    parser.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inside:
        errors = inside(args.live, args.seconds, args.flow)
        print(f"inside: {len(errors)} error(s)" if errors else "inside: no errors")
        for error in errors:
            print(f"  {error}")
        return 1 if errors else 0

    errors: list[str] = []
    started = time.monotonic()
    archives = eventing.build_images()
    print(f"images ({time.monotonic() - started:.1f} s):")
    for command, archive in archives.items():
        binary = (eventing.BIN / eventing.binary_name(command)).resolve()
        print(f"  {eventing.image_name(command):70} binary {binary.stat().st_size / 1e6:5.1f} MB"
              f"  archive {archive.stat().st_size / 2**20:5.1f} MiB")

    print("binaries:")
    for command in eventing.COMMANDS:
        name = eventing.binary_name(command)
        env = {"PATH": "/usr/bin:/bin", "HOME": tempfile.gettempdir()}
        if any(served_by == command for served_by, _, _ in WEBHOOKS.values()):
            env["WEBHOOK_NAME"] = "webhook"  # a knative.dev/pkg webhook panics at start without it
        try:
            result = subprocess.run([str(eventing.BIN / name), "-h"], capture_output=True, text=True, timeout=30, env=env)
        except (OSError, subprocess.TimeoutExpired) as failed:
            errors.append(f"{command}: {failed}")
            print(f"  FAIL {command}: {failed}")
            continue
        output = (result.stdout + result.stderr).strip().splitlines()
        flags = [line.split()[0] for line in output if line.startswith("  -")]
        if flags:
            print(f"  {command}: exit {result.returncode}, {len(flags)} flags: {' '.join(flags[:6])}"
                  f"{' ...' if len(flags) > 6 else ''}")
        else:
            first = next((line for line in output if line.strip()), "")
            print(f"  {command}: exit {result.returncode}: {first[:200]}")
            if not first:
                errors.append(f"{command} -h printed nothing")

    print("inside unshare --net:", flush=True)
    inner = subprocess.run(["unshare", "--net", sys.executable, __file__, "--inside",
                            "--seconds", str(args.seconds), *(["--live"] if args.live else []),
                            *(["--flow"] if args.flow else [])])
    print(f"{len(errors)} error(s) outside" if errors else "no errors outside")
    for error in errors:
        print(f"  {error}")
    return 1 if errors or inner.returncode else 0


def rendered_children() -> list[dict]:
    """The PingSources and Triggers the operator renders for the README's event examples."""
    children = []
    for example in EXAMPLES:
        result = subprocess.run([str(ROOT / ".venv" / "bin" / "aifn"), "render", "-f", str(ROOT / example)],
                                capture_output=True, text=True, check=True, timeout=120)
        children += [doc for doc in yaml.safe_load_all(result.stdout)
                     if doc and doc.get("kind") in ("PingSource", "Trigger")]
    return children


def command_env(command: str, workdir: Path) -> dict[str, str]:
    """The environment Eventing's Deployment gives a command, as on a pod named <command>-local."""
    name = eventing.binary_name(command)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(workdir), "POD_NAME": f"{name}-local",
           "SYSTEM_NAMESPACE": eventing.NAMESPACE, "CONFIG_LOGGING_NAME": "config-logging",
           "CONFIG_OBSERVABILITY_NAME": "config-observability", "METRICS_DOMAIN": "knative.dev/eventing",
           "POD_IP": LIVE_ADDRESS}
    for service, (served_by, webhook_name, port) in WEBHOOKS.items():
        if served_by == command:
            env.update(WEBHOOK_NAME=webhook_name, WEBHOOK_PORT=str(port))
    if command == "webhook":
        env["SINK_BINDING_SELECTION_MODE"] = "exclusion"
    if command == "controller":
        env.update(APISERVER_RA_IMAGE=eventing.image_name("apiserver_receive_adapter"),
                   AUTH_PROXY_IMAGE=eventing.image_name("auth_proxy"))
    if command == "in_memory/channel_controller":
        env.update(DISPATCHER_IMAGE=eventing.image_name("in_memory/channel_dispatcher"),
                   METRICS_DOMAIN="knative.dev/inmemorychannel-controller")
    # Pods have a network each; processes on one host would all bind the profiling port 8008.
    env["PROFILING_PORT"] = str(8008 + eventing.COMMANDS.index(command))
    return env


# Services whose endpoints are the processes run here: the two webhooks, and the data plane's (so
# the IMC and the Broker get addresses while the controllers run, as they would with pods).
POINTED = (*WEBHOOKS, "imc-dispatcher", "broker-ingress", "broker-filter")
DATA_PLANE = {  # command -> its Deployment (run with that Deployment's environment)
    "broker/ingress": "mt-broker-ingress",
    "broker/filter": "mt-broker-filter",
    "in_memory/channel_dispatcher": "imc-dispatcher",
    "mtping": "pingsource-mt-adapter",
}


def deployment_env(docs: list[dict], deployment: str) -> dict[str, str]:
    """The environment a Deployment's first container gets, on a pod named <deployment>-local."""
    fields = {"metadata.namespace": eventing.NAMESPACE, "metadata.name": f"{deployment}-local",
              "status.podIP": LIVE_ADDRESS, "spec.nodeName": "node-local"}
    configmaps = {(doc["metadata"]["name"]): doc.get("data") or {} for doc in docs if doc["kind"] == "ConfigMap"}
    doc = next(doc for doc in docs if doc["kind"] == "Deployment" and doc["metadata"]["name"] == deployment)
    env = {"PATH": "/usr/bin:/bin"}
    for item in doc["spec"]["template"]["spec"]["containers"][0].get("env", []):
        source = item.get("valueFrom", {})
        if "fieldRef" in source:  # before `value`: pingsource-mt-adapter has both, `value: ''` and a fieldRef
            env[item["name"]] = fields.get(source["fieldRef"]["fieldPath"], "0")
        elif "configMapKeyRef" in source:
            ref = source["configMapKeyRef"]
            env[item["name"]] = configmaps.get(ref["name"], {}).get(ref["key"], "")
        elif "value" in item:
            env[item["name"]] = str(item["value"])
    return env


def post_event(url: str) -> str:
    """POST one CloudEvent (binary mode) and say what came back."""
    request = urllib.request.Request(url, data=b'{"scanId": "s-1"}', method="POST", headers={
        "Content-Type": "application/json", "ce-specversion": "1.0", "ce-id": "check-1",
        "ce-source": "/aifn/check", "ce-type": "dev.aifn.digits.scanned"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return f"POST {url}: {response.status}"
    except urllib.error.HTTPError as failed:
        return f"POST {url}: {failed.code} {failed.read()[:200]!r}"
    except OSError as failed:
        return f"POST {url}: {failed}"


# --flow: each Service a name on its own address, port 80 DNAT-ed (iptables, this namespace only) to
# the process behind it, as kube-proxy would; names resolved by /etc/hosts in each image's root.
FLOW = {  # DNS name -> (address, port of the process on LIVE_ADDRESS)
    "broker-ingress.knative-eventing.svc.cluster.local": ("10.99.0.2", 8081),
    "broker-filter.knative-eventing.svc.cluster.local": ("10.99.0.3", 8082),
    "imc-dispatcher.knative-eventing.svc.cluster.local": ("10.99.0.4", 8080),
    "default-kne-trigger-kn-channel.default.svc.cluster.local": ("10.99.0.4", 8080),
    "digit-events.default.svc.cluster.local": ("10.99.0.5", 8090),
}


class _Subscriber(http.server.BaseHTTPRequestHandler):
    """The function's stand-in: records each CloudEvent it is sent."""

    received: list[dict] = []

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        _Subscriber.received.append({"headers": {k.lower(): v for k, v in self.headers.items()}, "body": body.decode(errors="replace")})
        self.send_response(202)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


FLOW_DEPLOYMENTS = {"in_memory/channel_dispatcher": "imc-dispatcher", "broker/ingress": "mt-broker-ingress",
                    "broker/filter": "mt-broker-filter", "webhook": "eventing-webhook",
                    "controller": "eventing-controller", "in_memory/channel_controller": "imc-controller",
                    "mtchannel_broker": "mt-broker-controller"}


def service_account_kubeconfig(plane: ControlPlane, docs: list[dict], deployment: str) -> Path:
    """A kubeconfig that authenticates as the Deployment's ServiceAccount (so its RBAC applies, and
    Eventing's webhooks see the user they expect: the IMC webhook refuses subscriber changes by anyone
    but eventing-controller)."""
    doc = next(doc for doc in docs if doc["kind"] == "Deployment" and doc["metadata"]["name"] == deployment)
    account = doc["spec"]["template"]["spec"].get("serviceAccountName", "default")
    return plane.client_kubeconfig(f"sa-{account}", f"system:serviceaccount:{eventing.NAMESPACE}:{account}",
                                   ("system:serviceaccounts", f"system:serviceaccounts:{eventing.NAMESPACE}"))


def event_flow(plane: ControlPlane, docs: list[dict], workdir: Path, children: list[dict]) -> list[str]:
    """A CloudEvent POSTed to the broker's ingress reaches the Trigger's subscriber through the IMC
    dispatcher and the broker filter, everything from its image; the subscriber is a Knative Service
    whose status says it is Ready at http://digit-events.default.svc.cluster.local (Serving's CRD only)."""
    errors: list[str] = []
    started = time.monotonic()
    for address, port in set(FLOW.values()):
        subprocess.run(["ip", "addr", "add", f"{address}/32", "dev", "lo"], check=False)
        subprocess.run(["iptables", "-t", "nat", "-A", "OUTPUT", "-d", address, "-p", "tcp", "--dport", "80",
                        "-j", "DNAT", "--to-destination", f"{LIVE_ADDRESS}:{port}"], check=True)
    hosts = "127.0.0.1 localhost\n" + "".join(f"{address} {name}\n" for name, (address, _) in FLOW.items())
    trigger = next(doc for doc in children if doc["kind"] == "Trigger")
    function = trigger["spec"]["subscriber"]["ref"]["name"]
    ksvc_crd = next(doc for doc in knative.split_crds(knative.core_manifests())[0]
                    if doc["metadata"]["name"] == "services.serving.knative.dev")
    plane.kubectl("apply", "--server-side", "-f", "-", input=eventing.dump([ksvc_crd]))
    plane.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd/services.serving.knative.dev", timeout=70)
    plane.kubectl("apply", "-f", "-", input=eventing.dump([{
        "apiVersion": "serving.knative.dev/v1", "kind": "Service", "metadata": {"name": function, "namespace": "default"},
        "spec": {"template": {"spec": {"containers": [{"image": "dev.local/aifn/none:0"}]}}}}]))
    url = f"http://{function}.default.svc.cluster.local"
    plane.kubectl("patch", f"services.serving.knative.dev/{function}", "-n", "default", "--subresource=status",
                  "--type=merge", "-p", json.dumps({"status": {
                      "observedGeneration": 1, "url": url, "address": {"url": url},
                      "conditions": [{"type": "Ready", "status": "True"}]}}))
    server = http.server.ThreadingHTTPServer((LIVE_ADDRESS, FLOW[f"{function}.default.svc.cluster.local"][1]), _Subscriber)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    ports = {"INGRESS_PORT": "8081", "INGRESS_PORT_HTTPS": "8543", "FILTER_PORT": "8082", "FILTER_PORT_HTTPS": "8544"}
    processes: list[tuple[str, subprocess.Popen, Path]] = []
    try:
        # The dispatcher first: its data port is 8080, which the others' probe servers also want.
        for command, deployment in (("in_memory/channel_dispatcher", "imc-dispatcher"),
                                    ("broker/ingress", "mt-broker-ingress"), ("broker/filter", "mt-broker-filter")):
            env = {**deployment_env(docs, deployment), **ports,
                   "PROFILING_PORT": str(8108 + eventing.COMMANDS.index(command))}
            process, log = start(plane, command, workdir, True, "-flow", env=env,
                                 kubeconfig=service_account_kubeconfig(plane, docs, deployment))
            processes.append((command, process, log))
        time.sleep(2)
        # The dispatcher also holds 8443 (its HTTPS port): Eventing's webhook moves to 8445.
        plane.kubectl("patch", "endpoints/eventing-webhook", "-n", eventing.NAMESPACE, "--type=json", "-p",
                      json.dumps([{"op": "replace", "path": "/subsets/0/ports/0/port", "value": 8445}]))
        plane.kubectl("patch", "endpointslice/eventing-webhook-local", "-n", eventing.NAMESPACE, "--type=json", "-p",
                      json.dumps([{"op": "replace", "path": "/ports/0/port", "value": 8445}]))
        for command in ("webhook", "controller", "in_memory/channel_controller", "mtchannel_broker"):
            env = {**command_env(command, workdir), **({"WEBHOOK_PORT": "8445"} if command == "webhook" else {})}
            process, log = start(plane, command, workdir, True, "-flow", env=env,
                                 kubeconfig=service_account_kubeconfig(plane, docs, FLOW_DEPLOYMENTS[command]))
            processes.append((command, process, log))
        for root in (workdir / "rootfs").iterdir():
            (root / "etc").mkdir(exist_ok=True)
            (root / "etc" / "hosts").write_text(hosts)
        ready = False
        while time.monotonic() - started < 90 and not ready:
            got = plane.kubectl("get", "trigger", trigger["metadata"]["name"], "-n", "default", "-o", "json", check=False)
            conditions = json.loads(got.stdout or "{}").get("status", {}).get("conditions", [])
            ready = any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)
            time.sleep(2)
        print(f"  flow: Trigger {trigger['metadata']['name']} Ready={ready} after {time.monotonic() - started:.1f} s")
        if not ready:
            errors.append(f"flow: the Trigger never became Ready: {conditions}")
            return errors
        answer, sent = "", time.monotonic()
        while time.monotonic() - sent < 30 and not _Subscriber.received:
            answer = post_event("http://10.99.0.2/default/default")
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and not _Subscriber.received:
                time.sleep(0.2)
        if _Subscriber.received:
            event = _Subscriber.received[0]
            print(f"  flow: {answer}; the subscriber got it {time.monotonic() - sent:.1f} s later: "
                  f"ce-type {event['headers'].get('ce-type')}, ce-id {event['headers'].get('ce-id')}, body {event['body'][:80]}")
        else:
            errors.append(f"flow: the subscriber got nothing ({answer})")
    finally:
        server.shutdown()
        for command, process, log in processes:
            early = stop(process)
            lines = [line for line in error_lines(log) if "address already in use" not in line
                     and "authentication-oidc feature is disabled" not in line]
            print(f"  flow {command}: {'exited ' + str(early) if early is not None else 'ran'}, {len(lines)} error lines",
                  *sorted(set(lines))[:4], sep="\n    ")
    return errors


def image_root(command: str, workdir: Path, plane: ControlPlane,
               kubeconfig: Path | None = None) -> tuple[Path, dict[str, str]]:
    """The image's file system unpacked (its one layer) with the admin kubeconfig at /kubeconfig, and its Env."""
    spec = eventing.image_spec(command)
    archive = eventing.build_archive(spec)
    root = workdir / "rootfs" / eventing.binary_name(command)
    if not root.exists():
        root.mkdir(parents=True)
        with tarfile.open(archive) as image:
            index = json.load(image.extractfile("index.json"))
            blob = lambda digest: image.extractfile("blobs/sha256/" + digest.split(":", 1)[1])  # noqa: E731
            manifest = json.load(blob(index["manifests"][0]["digest"]))
            with tarfile.open(fileobj=blob(manifest["layers"][0]["digest"])) as layer:
                layer.extractall(root, filter="tar")
    (root / "kubeconfig").write_bytes((kubeconfig or plane.kubeconfig).read_bytes())
    (root / "kubeconfig").chmod(0o644)  # readable by the image's user 65532
    return root, dict(item.split("=", 1) for item in spec.env)


def start(plane: ControlPlane, command: str, workdir: Path, tzdata: bool, tag: str = "",
          env: dict[str, str] | None = None, kubeconfig: Path | None = None) -> tuple[subprocess.Popen, Path]:
    """Run the command from its image: chroot into the unpacked layer as 65532:65532, with the image's
    Env and what the Deployment sets (`tzdata=False`: without the image's ZONEINFO)."""
    name = eventing.binary_name(command)
    root, image_env = image_root(command, workdir, plane, kubeconfig)
    env = {**(env if env is not None else command_env(command, workdir)), **image_env, "HOME": "/"}
    if not tzdata:
        env.pop("ZONEINFO", None)
    log = workdir / f"{name}{tag}.log"
    process = subprocess.Popen(["chroot", f"--userspec={eventing.NONROOT}", str(root), f"/ko-app/{name}",
                                "--kubeconfig=/kubeconfig"],
                               env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, cwd=workdir)
    return process, log


def dry_run(plane: ControlPlane, doc: dict) -> subprocess.CompletedProcess:
    return plane.kubectl("apply", "--server-side", "--dry-run=server", "--field-manager=aifn-check",
                         "-f", "-", input=eventing.dump([doc]), check=False)


def what(doc: dict) -> str:
    return f"{doc['kind']} {doc['metadata'].get('namespace', '')}/{doc['metadata']['name']}"


def inside(live: bool, seconds: int, flow: bool = False) -> list[str]:
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    subprocess.run(["ip", "addr", "add", f"{LIVE_ADDRESS}/32", "dev", "lo"], check=True)
    errors: list[str] = []
    docs = eventing.manifests()
    crds, rest = eventing.split_crds(docs)
    namespaces = [doc for doc in rest if doc["kind"] == "Namespace"]
    others = [doc for doc in rest if doc["kind"] != "Namespace"]
    print(f"  manifests: {len(docs)} objects ({len(crds)} CRDs)")

    started = time.monotonic()
    with ControlPlane(crd_paths=[]) as plane:
        applied = plane.kubectl("apply", "--server-side", "--field-manager=aifn-check", "-f", "-",
                                input=eventing.dump(crds + namespaces), check=False)
        if applied.returncode:
            errors.append(f"CRDs: {applied.stderr.strip()}")
        plane.kubectl("wait", "--for=condition=Established", "--timeout=60s",
                      *[f"crd/{doc['metadata']['name']}" for doc in crds], timeout=70)
        print(f"  {len(crds)} CRDs and the namespace applied (rc {applied.returncode})")
        failed = 0
        for doc in others:  # one at a time, so one failure does not hide the others
            result = dry_run(plane, doc)
            if result.returncode:
                failed += 1
                errors.append(f"{what(doc)}: {result.stderr.strip()}")
                print(f"  FAIL {what(doc)}: {result.stderr.strip()}")
        print(f"  dry run: {len(others) - failed} of {len(others)} objects accepted "
              f"({time.monotonic() - started:.1f} s)")
    if live:
        errors += live_check(docs, seconds, flow)
    return errors


def live_check(docs: list[dict], seconds: int, flow: bool = False) -> list[str]:
    errors: list[str] = []
    workdir = Path(tempfile.mkdtemp(prefix="aifn-eventing-live-"))
    crds, rest = eventing.split_crds(docs)
    extra = []
    for doc in rest:  # Services of processes run here point at LIVE_ADDRESS instead of pods
        name = doc["metadata"]["name"]
        if doc["kind"] != "Service" or name not in POINTED:
            continue
        doc["spec"].pop("selector", None)  # else the endpoints controller empties what follows
        ports = []
        for item in doc["spec"]["ports"]:
            if name in WEBHOOKS:
                item["targetPort"] = WEBHOOKS[name][2]
            target = item.get("targetPort", item["port"])
            ports.append({"name": item.get("name", ""), "port": int(target)})
        extra.append({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                      "metadata": {"name": f"{name}-local", "namespace": eventing.NAMESPACE,
                                   "labels": {"kubernetes.io/service-name": name,
                                              "endpointslice.kubernetes.io/managed-by": "aifn-check"}},
                      "addressType": "IPv4",
                      "endpoints": [{"addresses": [LIVE_ADDRESS], "conditions": {"ready": True}}],
                      "ports": [dict(port, protocol="TCP") for port in ports]})
        extra.append({"apiVersion": "v1", "kind": "Endpoints",
                      "metadata": {"name": name, "namespace": eventing.NAMESPACE},
                      "subsets": [{"addresses": [{"ip": LIVE_ADDRESS}], "ports": ports}]})
    children = rendered_children()
    broker = eventing.default_broker("default")
    bad_zone = next(dict(doc, spec=dict(doc["spec"], timezone="Europe/Nowhere"))
                    for doc in children if doc["kind"] == "PingSource")
    network = Network(extra_apiserver_args=("--endpoint-reconciler-type=none", "--enable-aggregator-routing=true"))
    with ControlPlane(crd_paths=[], network=network) as plane:
        plane.kubectl("apply", "--server-side", "--field-manager=aifn-check", "-f", "-", input=eventing.dump(crds))
        plane.kubectl("wait", "--for=condition=Established", "--timeout=60s",
                      *[f"crd/{doc['metadata']['name']}" for doc in crds], timeout=70)
        plane.kubectl("apply", "--server-side", "--field-manager=aifn-check", "-f", "-",
                      input=eventing.dump([*rest, *extra]))

        def serving(process: subprocess.Popen, since: float) -> bool:
            """Until the webhook refuses a Broker with an unknown delivery policy (it then gates requests)."""
            bad = {"apiVersion": "eventing.knative.dev/v1", "kind": "Broker",
                   "metadata": {"name": "probe", "namespace": "default"},
                   "spec": {"delivery": {"backoffPolicy": "sometimes"}}}
            while time.monotonic() - since < 90 and process.poll() is None:
                result = dry_run(plane, bad)
                if result.returncode and "backoffPolicy" in result.stderr:
                    return True
                time.sleep(2)
            return False

        pingsource = next(doc for doc in children if doc["kind"] == "PingSource")
        # 1. From its image without ZONEINFO (the chroot has no /usr/share/zoneinfo): an image
        #    without a time-zone database cannot validate the timezone.
        started = time.monotonic()
        webhook, log = start(plane, "webhook", workdir, False, "-no-tzdata")
        try:
            if not serving(webhook, started):
                errors.append(f"webhook (no tzdata) never served: {log.read_text()[-1500:]}")
            else:
                result = dry_run(plane, pingsource)
                print(f"  without tzdata: {what(pingsource)} timezone {pingsource['spec']['timezone']}: "
                      f"{'accepted (unexpected)' if result.returncode == 0 else 'refused: ' + result.stderr.strip().splitlines()[-1][:300]}")
                if result.returncode == 0 or "unknown time zone" not in result.stderr:
                    errors.append("without a time-zone database the webhook did not refuse the PingSource's timezone: "
                                  "does the binary embed time/tzdata now? Then the images need no zoneinfo.zip")
        finally:
            stop(webhook)
        # 2. From its image as it is: ZONEINFO names the image's /usr/share/zoneinfo.zip.
        started = time.monotonic()
        webhook, log = start(plane, "webhook", workdir, True)
        controllers: list[tuple[str, subprocess.Popen, Path]] = []
        try:
            if not serving(webhook, started):
                errors.append(f"webhook never served: {log.read_text()[-1500:]}")
                return errors
            print(f"  webhook (from its image, ZONEINFO={eventing.ZONEINFO}) serving after {time.monotonic() - started:.1f} s")
            for doc in (broker, *children, bad_zone):
                result = dry_run(plane, doc)
                expected_refusal = doc is bad_zone
                ok = (result.returncode != 0) == expected_refusal
                detail = result.stderr.strip().splitlines()[-1][:300] if result.returncode else "accepted"
                label = f"{what(doc)}{' timezone ' + doc['spec']['timezone'] if doc['kind'] == 'PingSource' else ''}"
                print(f"  {'ok  ' if ok else 'FAIL'} dry run {label}: {detail}")
                if not ok:
                    errors.append(f"{label}: {detail}")
            for doc in (broker, *children):
                result = plane.kubectl("apply", "--server-side", "--field-manager=aifn", "-f", "-",
                                       input=eventing.dump([doc]), check=False)
                if result.returncode:
                    errors.append(f"create {what(doc)}: {result.stderr.strip()}")
            # 3. The controllers together, as the cluster would run them.
            for command in ("controller", "in_memory/channel_controller", "mtchannel_broker"):
                process, clog = start(plane, command, workdir, True)
                controllers.append((command, process, clog))
            time.sleep(seconds)
        finally:
            for command, process, clog in controllers:
                early = stop(process)
                lines = [line for line in error_lines(clog) if "address already in use" not in line]
                print(f"  {command}: {'exited ' + str(early) if early is not None else f'ran {seconds} s'}, "
                      f"{len(lines)} error lines (not counting the probe port 8080 that processes sharing "
                      f"one network contend for)", *sorted(set(lines))[:8], sep="\n    ")
                if early is not None:
                    errors.append(f"{command} exited early ({early}): {clog.read_text()[-800:]}")
            stop(webhook)
        print(f"  webhook: {len(error_lines(log))} error lines", *sorted(set(error_lines(log)))[:5], sep="\n    ")
        for resource in ("broker/default", f"pingsource/{pingsource['metadata']['name']}",
                         f"trigger/{next(d for d in children if d['kind'] == 'Trigger')['metadata']['name']}"):
            got = plane.kubectl("get", resource, "-n", "default", "-o", "json", check=False)
            if got.returncode:
                print(f"  {resource}: {got.stderr.strip()}")
                continue
            conditions = json.loads(got.stdout).get("status", {}).get("conditions", [])
            print(f"  {resource}:", *[f"{c['type']}={c['status']} {c.get('reason', '')} {c.get('message', '')[:160]}"
                                      for c in conditions], sep="\n    ")
        made = plane.kubectl("get", "inmemorychannels,subscriptions,deployments,leases", "-A", "--no-headers", check=False)
        print("  objects after the run:", *made.stdout.splitlines(), sep="\n    ")
        # 4. The data plane, one at a time (each listens on 8080), with its Deployment's environment.
        for command, deployment in DATA_PLANE.items():
            env = deployment_env(docs, deployment)
            process, dlog = start(plane, command, workdir, True, env=env)
            answer = ""
            try:
                time.sleep(8)
                if command == "broker/ingress":
                    answer = post_event(f"http://127.0.0.1:{env.get('INGRESS_PORT', '8080')}/default/default")
            finally:
                early = stop(process)
            lines = error_lines(dlog)
            print(f"  {command} ({deployment}'s env): {'exited ' + str(early) if early is not None else 'ran 8 s'}, "
                  f"{len(lines)} error lines{'; ' + answer if answer else ''}", *sorted(set(lines))[:5], sep="\n    ")
            if early is not None:
                errors.append(f"{command} exited early ({early}): {dlog.read_text()[-800:]}")
        if flow:
            errors += event_flow(plane, docs, workdir, children)
    shutil.rmtree(workdir / "rootfs", ignore_errors=True)  # the unpacked images (~60 MB each); logs stay
    print(f"  logs: {workdir}")
    return errors


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
