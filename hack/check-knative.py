#!/usr/bin/env python3
"""Checks Knative Serving's resolved manifests and images without a cluster (tests/support/cluster/knative.py).

1. builds the five images as OCI archives (cached) and prints their names and sizes;
2. starts a throwaway control plane (free loopback ports; no nodes), applies the CRDs and the
   namespace for real, then `kubectl apply --server-side --dry-run=server` of everything else and a
   dry-run merge patch of each ConfigMap with the README's settings; prints every error;
3. runs each binary briefly (`-h`) to show it links and starts;
4. with --live, in a private network namespace (`unshare -n`: nothing binds the host's ports, the
   running cluster is not touched): a throwaway control plane with everything applied for real, the
   webhook started on the host against it (the apiserver reaches it through an EndpointSlice, with
   --enable-aggregator-routing), the README's settings patched in through Knative's own ConfigMap
   validation, a bad setting refused, the golden renderings (tests/unit/golden/) applied with
   server-side dry-run through Knative's defaulting and validation; then controller, autoscaler and
   activator run one after the other for a few seconds each, their error lines reported.

Needs `make tools` (kubectl, kube-apiserver, etcd), `bash hack/build-knative.sh`, and root for --live. Exit 1 on
any error. Usage: .venv/bin/python hack/check-knative.py [--ingress-class CLASS] [--live]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from check_common import error_lines, stop  # noqa: E402
from support.cluster import knative  # noqa: E402
from support.controlplane import ControlPlane, Network  # noqa: E402

LIVE_ADDRESS = "10.99.0.1"  # on the private namespace's loopback: an endpoint address may not be 127/8


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ingress-class", default="kourier.ingress.networking.knative.dev",
                        help="config-network ingress-class to dry-run (the networking layer is not chosen yet)")
    parser.add_argument("--live", action="store_true", help="also run the components against a control plane")
    parser.add_argument("--live-inside", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.live_inside:
        errors = live(args.ingress_class)
        print(f"live: {len(errors)} error(s)" if errors else "live: no errors")
        for error in errors:
            print(f"  {error}")
        return 1 if errors else 0
    errors: list[str] = []

    started = time.monotonic()
    archives = knative.build_images()
    print(f"images ({time.monotonic() - started:.1f} s):")
    for component, archive in archives.items():
        print(f"  {knative.image_name(component):50} {archive.stat().st_size / 2**20:6.1f} MiB  {archive.name}")

    docs = knative.core_manifests()
    crds, rest = knative.split_crds(docs)
    namespaces = [doc for doc in rest if doc["kind"] == "Namespace"]
    rest = [doc for doc in rest if doc["kind"] != "Namespace"]
    print(f"manifests: {len(docs)} objects ({len(crds)} CRDs) from {knative.module_dir()}/config/core")

    with ControlPlane(crd_paths=[]) as plane:
        applied = plane.kubectl("apply", "--server-side", "--field-manager=aifn-check", "-f", "-",
                                input=knative.dump(crds + namespaces), check=False)
        print(f"CRDs and namespace applied (rc {applied.returncode}):\n{applied.stdout}{applied.stderr}")
        if applied.returncode:
            errors.append(applied.stderr)
        names = [f"crd/{doc['metadata']['name']}" for doc in crds]
        plane.kubectl("wait", "--for=condition=Established", "--timeout=60s", *names, timeout=70)
        # One object at a time, so one failure does not hide the others.
        for doc in rest:
            what = f"{doc['kind']} {doc['metadata'].get('namespace', '')}/{doc['metadata']['name']}"
            result = plane.kubectl("apply", "--server-side", "--dry-run=server", "--field-manager=aifn-check",
                                   "-f", "-", input=knative.dump([doc]), check=False)
            if result.returncode:
                errors.append(f"{what}: {result.stderr.strip()}")
                print(f"  FAIL {what}: {result.stderr.strip()}")
            else:
                print(f"  ok   {what}")
        # The README's settings, as merge patches of the ConfigMaps (created for real for that).
        configmaps = [doc for doc in rest if doc["kind"] == "ConfigMap"]
        plane.kubectl("apply", "--server-side", "--field-manager=aifn-check", "-f", "-", input=knative.dump(configmaps))
        for name, data in knative.cluster_settings(args.ingress_class).items():
            result = plane.kubectl("patch", f"configmap/{name}", "-n", knative.NAMESPACE, "--type", "merge",
                                   "--dry-run=server", "-p", json.dumps({"data": data}), check=False)
            status = "ok  " if result.returncode == 0 else "FAIL"
            print(f"  {status} patch {name}: {json.dumps(data)}")
            if result.returncode:
                errors.append(f"patch {name}: {result.stderr.strip()}")

    print("binaries:")
    for component in knative.COMPONENTS:
        binary = knative.BIN / component
        # The webhook panics at start without WEBHOOK_NAME (its Deployment sets it); queue-proxy has
        # no flags and reads its whole configuration from the environment Knative gives it.
        env = {"PATH": "/usr/bin:/bin", **({"WEBHOOK_NAME": "webhook"} if component == "webhook" else {})}
        try:
            result = subprocess.run([str(binary), "-h"], capture_output=True, text=True, timeout=30, env=env)
        except OSError as failed:
            errors.append(f"{component}: {failed}")
            print(f"  FAIL {component}: {failed}")
            continue
        output = (result.stdout + result.stderr).strip().splitlines()
        flags = [line.split()[0] for line in output if line.strip().startswith("-")]
        if component == "queue":
            print(f"  {component}: exit {result.returncode}: {output[0] if output else ''}")
            if "required key" not in result.stdout + result.stderr:
                errors.append(f"queue did not ask for its environment: {output[:3]}")
            continue
        print(f"  {component}: exit {result.returncode}, {len(flags)} flags: {' '.join(flags[:8])}"
              f"{' ...' if len(flags) > 8 else ''}")
        if not output or not (output[0].startswith("Usage") or flags):
            errors.append(f"{component} -h printed no usage: {output[:3]}")

    print(f"{len(errors)} error(s)" if errors else "no errors")
    for error in errors:
        print(f"  {error}")
    if args.live:
        print("live (unshare -n):", flush=True)
        inside = subprocess.run(["unshare", "--net", sys.executable, __file__, "--live-inside",
                                 "--ingress-class", args.ingress_class])
        return 1 if errors or inside.returncode else 0
    return 1 if errors else 0


def component_env(component: str, workdir: Path) -> dict[str, str]:
    """The environment Knative's Deployment gives a component, as on a pod named <component>-local."""
    env = {"PATH": "/usr/bin:/bin", "HOME": str(workdir), "POD_NAME": f"{component}-local",
           "SYSTEM_NAMESPACE": knative.NAMESPACE, "CONFIG_LOGGING_NAME": "config-logging",
           "CONFIG_OBSERVABILITY_NAME": "config-observability", "POD_IP": LIVE_ADDRESS}
    if component == "webhook":
        env.update(WEBHOOK_NAME="webhook", WEBHOOK_PORT="8443")
    if component == "activator":
        env["GOGC"] = "500"
    return env


def run_component(plane: ControlPlane, component: str, workdir: Path) -> tuple[subprocess.Popen, Path]:
    log = workdir / f"{component}.log"
    process = subprocess.Popen([str(knative.BIN / component), f"--kubeconfig={plane.kubeconfig}"],
                               env=component_env(component, workdir), stdout=log.open("w"),
                               stderr=subprocess.STDOUT, cwd=workdir)
    return process, log


def check_goldens(plane: ControlPlane) -> list[str]:
    """Server-side dry-run of every golden rendering through Knative's webhook.

    Knative's validation dry-runs a Pod from the template (`dry-run-validation`), so the apiserver's
    own admission applies too: a `runtimeClassName` needs that RuntimeClass to exist. A rendering
    refused for a missing RuntimeClass is tried again once one of that name exists (handler runc).
    """
    errors: list[str] = []
    for golden in sorted((ROOT / "tests" / "unit" / "golden").glob("*.yaml")):
        for doc in yaml.safe_load_all(golden.read_text()):
            if not doc or doc.get("apiVersion") != "serving.knative.dev/v1":
                continue
            namespace = doc["metadata"].get("namespace", "default")
            plane.kubectl("create", "namespace", namespace, check=False)
            what = f"golden {golden.name} ({doc['kind']} {namespace}/{doc['metadata']['name']})"
            for attempt in (1, 2):
                result = plane.kubectl("apply", "--server-side", "--dry-run=server", "--field-manager=aifn",
                                       "-f", "-", input=knative.dump([doc]), check=False)
                print(f"  {'ok  ' if result.returncode == 0 else 'FAIL'} {what}"
                      f"{': ' + result.stderr.strip() if result.returncode else ''}")
                runtime_class = doc["spec"]["template"]["spec"].get("runtimeClassName")
                if result.returncode and attempt == 1 and runtime_class and "RuntimeClass" in result.stderr:
                    print(f"       (expected: Knative's pod dry-run needs RuntimeClass {runtime_class}; creating it)")
                    plane.kubectl("apply", "-f", "-", input=knative.dump([{
                        "apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass",
                        "metadata": {"name": runtime_class}, "handler": "runc"}]))
                    what += f" with RuntimeClass {runtime_class}"
                    continue
                if result.returncode:
                    errors.append(f"{what}: {result.stderr.strip()}")
                break
    return errors


def live(ingress_class: str) -> list[str]:
    """Inside `unshare -n`: the webhook gating real requests, then the other components briefly."""
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    subprocess.run(["ip", "addr", "add", f"{LIVE_ADDRESS}/32", "dev", "lo"], check=True)
    errors: list[str] = []
    workdir = Path(tempfile.mkdtemp(prefix="aifn-knative-live-"))
    network = Network(extra_apiserver_args=("--endpoint-reconciler-type=none", "--enable-aggregator-routing=true"))
    docs = knative.core_manifests()
    crds, rest = knative.split_crds(docs)
    for doc in rest:  # the webhook Service points at the host process instead of pods
        if doc["kind"] == "Service" and doc["metadata"]["name"] == "webhook":
            doc["spec"].pop("selector", None)
    slice_ = {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
              "metadata": {"name": "webhook-local", "namespace": knative.NAMESPACE,
                           "labels": {"kubernetes.io/service-name": "webhook",
                                      "endpointslice.kubernetes.io/managed-by": "aifn-check"}},
              "addressType": "IPv4", "endpoints": [{"addresses": [LIVE_ADDRESS], "conditions": {"ready": True}}],
              "ports": [{"name": "https-webhook", "port": 8443, "protocol": "TCP"}]}
    endpoints = {"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "webhook", "namespace": knative.NAMESPACE},
                 "subsets": [{"addresses": [{"ip": LIVE_ADDRESS}], "ports": [{"name": "https-webhook", "port": 8443}]}]}
    with ControlPlane(crd_paths=[], network=network) as plane:
        plane.kubectl("apply", "--server-side", "--field-manager=aifn-check", "-f", "-", input=knative.dump(crds))
        plane.kubectl("wait", "--for=condition=Established", "--timeout=60s",
                      *[f"crd/{doc['metadata']['name']}" for doc in crds], timeout=70)
        plane.kubectl("apply", "--server-side", "--field-manager=aifn-check", "-f", "-",
                      input=knative.dump([*rest, slice_, endpoints]))
        started = time.monotonic()
        webhook, webhook_log = run_component(plane, "webhook", workdir)
        try:
            bad = json.dumps({"data": {"stable-window": "1s"}})  # Knative allows 6s..1h
            refused = None
            while time.monotonic() - started < 90 and webhook.poll() is None:
                result = plane.kubectl("patch", "configmap/config-autoscaler", "-n", knative.NAMESPACE,
                                       "--type", "merge", "--dry-run=server", "-p", bad, check=False)
                if result.returncode and "stable-window" in result.stderr:
                    refused = result.stderr.strip()
                    break
                time.sleep(2)
            if refused is None:
                errors.append(f"the webhook never refused stable-window=1s (exit {webhook.poll()}); "
                              f"log: {webhook_log.read_text()[-1500:]}")
            else:
                print(f"  webhook serving after {time.monotonic() - started:.1f} s; stable-window=1s refused: "
                      f"{refused.splitlines()[-1][:240]}")
                for name, data in knative.cluster_settings(ingress_class).items():
                    result = plane.kubectl("patch", f"configmap/{name}", "-n", knative.NAMESPACE, "--type", "merge",
                                           "-p", json.dumps({"data": data}), check=False)
                    print(f"  {'ok  ' if result.returncode == 0 else 'FAIL'} patch {name} through the webhook"
                          f"{': ' + result.stderr.strip() if result.returncode else ''}")
                    if result.returncode:
                        errors.append(f"patch {name}: {result.stderr.strip()}")
                errors += check_goldens(plane)
        finally:
            early = stop(webhook)
        if early is not None:
            errors.append(f"webhook exited early ({early})")
        print(f"  webhook: {len(error_lines(webhook_log))} error lines", *error_lines(webhook_log)[:5], sep="\n    ")
        for component in ("controller", "autoscaler", "activator"):
            process, log = run_component(plane, component, workdir)
            time.sleep(20)
            early = stop(process)
            lines = error_lines(log)
            print(f"  {component}: {'exited ' + str(early) if early is not None else 'ran 20 s'}, "
                  f"{len(lines)} error lines", *lines[:6], sep="\n    ")
            if early is not None:
                errors.append(f"{component} exited early ({early}): {log.read_text()[-800:]}")
        leases = plane.kubectl("get", "leases", "-n", knative.NAMESPACE, "--no-headers", check=False).stdout
        print(f"  leases held in {knative.NAMESPACE}: {len(leases.splitlines())}")
    print(f"  logs: {workdir}")
    return errors


if __name__ == "__main__":
    sys.exit(main())
