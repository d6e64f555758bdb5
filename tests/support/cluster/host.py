"""The host side of the local cluster: what it needs (checked before anything starts) and the network it sets up.

Every check names the problem and what to do about it; `preflight()` raises HostProblem with
all of them at once, before any process is started or any setting changed.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import socket
import subprocess
from pathlib import Path

from .layout import (
    APISERVER_PORT,
    CNI_BIN_DIR,
    CONTROL_PLANE_IP,
    DUMMY_INTERFACE,
    MODEL_REPO_LINK,
    NODES,
    POD_CIDR,
    RUN_DIR,
    SERVICE_CIDR,
)

# Debian packages the nodes run on, and one program of each to look for.
PACKAGES = {
    "containerd": "containerd",
    "runc": "runc",
    "ctr": "containerd",
    "iptables": "iptables",
    "iptables-save": "iptables",
    "conntrack": "conntrack",
    "ip": "iproute2",
    "tar": "tar",
}
CNI_PLUGINS = ("bridge", "host-local", "loopback", "portmap")
SYSCTLS = {
    "net/ipv4/ip_forward": "1",
    "net/bridge/bridge-nf-call-iptables": "1",
}
FIREWALL_COMMENT = "aifn-cluster"


class HostProblem(RuntimeError):
    """The host cannot run the cluster; the message says what is wrong and what to do."""


def _missing_programs() -> list[str]:
    missing = [f"{program} (Debian package {package})" for program, package in PACKAGES.items()
               if shutil.which(program) is None]
    missing += [f"{CNI_BIN_DIR / plugin} (Debian package containernetworking-plugins)"
                for plugin in CNI_PLUGINS if not (CNI_BIN_DIR / plugin).exists()]
    return missing


def kernel_problems(proc: Path = Path("/proc"), cgroup: Path = Path("/sys/fs/cgroup")) -> list[str]:
    """Kernel features the nodes need that this host lacks, each with what to do."""
    problems = []
    if "overlay" not in (proc / "filesystems").read_text():
        problems.append("the kernel has no overlay file system (containerd's overlayfs snapshotter needs it): "
                        "`modprobe overlay`")
    if not (cgroup / "cgroup.controllers").exists():  # cgroup v1: one hierarchy per controller
        for controller in ("cpu", "memory", "pids", "cpuset"):
            if not (cgroup / controller).is_dir():
                problems.append(f"cgroup v1 controller `{controller}` is not mounted at {cgroup / controller}")
    if not (proc / "sys/net/bridge/bridge-nf-call-iptables").exists():
        problems.append("bridged traffic does not pass iptables (no /proc/sys/net/bridge): `modprobe br_netfilter`")
    if not (proc / "self/ns/net").exists():
        problems.append("the kernel has no network namespaces")
    return problems


def _port_problems() -> list[str]:
    """Ports the cluster binds on loopback (the node and control-plane addresses do not exist yet)."""
    ports = [("kube-proxy metrics", 10249), ("kube-proxy healthz", 10256), ("kube-scheduler", 10259),
             ("kube-controller-manager", 10257)]
    ports += [(f"kubelet {node.name} healthz", node.kubelet_healthz_port) for node in NODES]
    problems = []
    for what, port in ports:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            # As the components' Go listeners do: connections of a previous run in TIME_WAIT do not count.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("127.0.0.1", port))
            except OSError as error:
                if error.errno == errno.EADDRINUSE:
                    problems.append(f"port 127.0.0.1:{port} ({what}) is in use by another program; stop it "
                                    f"(`ss -ltnp 'sport = :{port}'` names it)")
    return problems


def preflight(binaries: dict[str, Path]) -> None:
    """Raise HostProblem listing everything that keeps this host from running the cluster."""
    problems: list[str] = []
    if os.geteuid() != 0:
        problems.append("the cluster needs root (it runs containerd and kubelets, and changes iptables and "
                        "network interfaces): run `sudo make cluster`")
    missing = _missing_programs()
    if missing:
        problems.append(f"missing: {', '.join(missing)}; `make cluster-deps` installs them (apt-get)")
    absent = [f"{name} ({path})" for name, path in binaries.items() if not os.access(path, os.X_OK)]
    if absent:
        problems.append(f"not built: {', '.join(absent)}; run `make tools`")
    problems += kernel_problems()
    problems += _port_problems()
    if problems:
        raise HostProblem("the cluster cannot start on this host:\n  - " + "\n  - ".join(problems))


def run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a host command, raising with its stderr on failure."""
    result = subprocess.run(list(argv), capture_output=True, text=True)
    if check and result.returncode != 0:
        raise HostProblem(f"`{' '.join(argv)}` failed ({result.returncode}): {result.stderr.strip()}")
    return result


def default_interface() -> str | None:
    """The interface of the default route (pods must not send traffic out of it)."""
    routes = json.loads(run("ip", "-json", "route", "show", "default").stdout or "[]")
    return routes[0].get("dev") if routes else None


def set_up_network() -> None:
    """The cluster's own interface with the control plane's and nodes' addresses, routes, sysctls, firewall.

    The Service and pod ranges are routed to that interface, so a packet for an address that
    kube-proxy or a bridge does not (yet) serve is dropped here instead of leaving the machine.
    """
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    saved = {key: Path("/proc/sys", key).read_text().strip() for key in SYSCTLS}
    (RUN_DIR / "sysctl-before.json").write_text(json.dumps(saved))
    for key, value in SYSCTLS.items():
        Path("/proc/sys", key).write_text(value)
    # A bridge without ports stands in for a dummy interface (some kernels, this VM's among them,
    # have no dummy driver): its addresses are local, and what is routed to it goes nowhere.
    run("ip", "link", "add", DUMMY_INTERFACE, "type", "bridge")
    run("ip", "link", "set", DUMMY_INTERFACE, "up")
    for address in (CONTROL_PLANE_IP, *(node.ip for node in NODES)):
        run("ip", "address", "add", f"{address}/32", "dev", DUMMY_INTERFACE)
    for cidr in (SERVICE_CIDR, POD_CIDR):
        run("ip", "route", "add", cidr, "dev", DUMMY_INTERFACE)
    outside = default_interface()
    if outside:
        run("iptables", "-I", "FORWARD", "1", "-s", POD_CIDR, "-o", outside, "-m", "comment", "--comment",
            FIREWALL_COMMENT, "-j", "DROP")


def link_model_repo(model_repo: Path) -> None:
    """Make /aifn/model_repo (kind-config.yaml's extraMounts path) lead to `model_repo`; refuse to replace a real directory."""
    if MODEL_REPO_LINK.exists() and not MODEL_REPO_LINK.is_symlink():
        raise HostProblem(f"{MODEL_REPO_LINK} exists and is not a link the cluster made: move it away")
    MODEL_REPO_LINK.parent.mkdir(parents=True, exist_ok=True)
    if MODEL_REPO_LINK.is_symlink():
        MODEL_REPO_LINK.unlink()
    MODEL_REPO_LINK.symlink_to(model_repo.resolve(), target_is_directory=True)


def apiserver_port_free() -> bool:
    """True when nothing listens on the apiserver's port of the control-plane address (checked after set-up)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((CONTROL_PLANE_IP, APISERVER_PORT))
        except OSError:
            return False
    return True
