"""Remove everything the local cluster made: processes, containers, mounts, network, firewall rules, cgroups.

Works from what is on the host, not from a running cluster's memory, so it also cleans what a
killed run left behind. Idempotent: cleaning a clean host does nothing. Kept on purpose:
containerd's image stores under DATA_DIR/<node>/containerd (a cache; `--purge` removes them).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from .host import FIREWALL_COMMENT, SYSCTLS
from .layout import DATA_DIR, DUMMY_INTERFACE, MODEL_REPO_LINK, NODES, RUN_DIR

OUR_CHAIN_PREFIXES = ("KUBE-", "CNI-")
# kubelet 1.35 keeps its device-plugin socket and checkpoint at this fixed path, whatever its
# --root-dir (pluginapi.DevicePluginPath), so the two kubelets share it: a checkpoint the GPU worker
# wrote would make the CPU worker list nvidia.com/gpu (as 0) when it next starts. Removed on clean.
SHARED_DEVICE_PLUGIN_DIR = Path("/var/lib/kubelet/device-plugins")


@dataclass
class Leftovers:
    """What of a cluster is on this host."""

    processes: dict[int, str] = field(default_factory=dict)  # pid -> command line
    containers: list[str] = field(default_factory=list)
    mounts: list[str] = field(default_factory=list)
    interfaces: list[str] = field(default_factory=list)
    firewall_rules: int = 0
    cgroups: list[str] = field(default_factory=list)
    directories: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return any((self.processes, self.containers, self.mounts, self.interfaces, self.firewall_rules,
                    self.cgroups, self.directories))

    def summary(self) -> str:
        parts = []
        for label, items in (("processes", self.processes), ("containers", self.containers), ("mounts", self.mounts),
                             ("interfaces", self.interfaces), ("cgroups", self.cgroups),
                             ("directories", self.directories)):
            if items:
                parts.append(f"{len(items)} {label}")
        if self.firewall_rules:
            parts.append(f"{self.firewall_rules} iptables rules/chains")
        return ", ".join(parts) or "nothing"


def _ours(text: str) -> bool:
    return str(RUN_DIR) in text or str(DATA_DIR) in text


def cluster_processes() -> dict[int, str]:
    """Processes whose command line names the cluster's directories (components, kubelets, shims)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        if cmdline and _ours(cmdline):
            found[int(entry.name)] = cmdline
    return found


def _containers() -> dict[Path, list[str]]:
    found: dict[Path, list[str]] = {}
    for node in NODES:
        root = node.runc_root / "k8s.io"  # the runc shim adds the containerd namespace to its Root
        if not root.is_dir() or shutil.which("runc") is None:
            continue
        result = subprocess.run(["runc", "--root", str(root), "list", "--format", "json"],
                                capture_output=True, text=True)
        if result.returncode == 0 and result.stdout.strip() not in ("", "null"):
            found[root] = [c["id"] for c in json.loads(result.stdout)]
    return found


def _mounts() -> list[str]:
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if _ours(point + "/"):
            points.append(point)
    return points


def _interfaces() -> list[str]:
    names = [DUMMY_INTERFACE, *(node.bridge for node in NODES)]
    return [name for name in names if Path("/sys/class/net", name).exists()]


def _firewall_lines(dump: str) -> list[str]:
    """The iptables-save lines that are the cluster's (kube-proxy's, CNI's, ours)."""
    lines = []
    for line in dump.splitlines():
        chain_declared = line.startswith(":") and line[1:].startswith(OUR_CHAIN_PREFIXES)
        rule = line.startswith("-A ") and (
            line.split()[1].startswith(OUR_CHAIN_PREFIXES)
            or any(f"-j {prefix}" in line for prefix in OUR_CHAIN_PREFIXES)
            or FIREWALL_COMMENT in line
        )
        if chain_declared or rule:
            lines.append(line)
    return lines


def _iptables_dump() -> str:
    if shutil.which("iptables-save") is None:
        return ""
    return subprocess.run(["iptables-save"], capture_output=True, text=True).stdout


def _cgroups() -> list[Path]:
    bases = [Path("/sys/fs/cgroup")]
    if not Path("/sys/fs/cgroup/cgroup.controllers").exists():
        bases = [p for p in Path("/sys/fs/cgroup").iterdir() if p.is_dir()]
    return [base / node.cgroup_root.strip("/") for base in bases for node in NODES
            if (base / node.cgroup_root.strip("/")).is_dir()]


def find_leftovers() -> Leftovers:
    """Everything of a cluster that is on this host right now."""
    return Leftovers(
        processes={**cluster_processes(), **{pid: "(in a node's cgroup)" for pid in cgroup_processes()}},
        containers=[c for ids in _containers().values() for c in ids],
        mounts=_mounts(),
        interfaces=_interfaces(),
        firewall_rules=len(_firewall_lines(_iptables_dump())),
        cgroups=[str(p) for p in _cgroups()],
        directories=[str(d) for d in (RUN_DIR, *(n.kubelet_dir for n in NODES), *(n.data_dir / "pod-logs" for n in NODES),
                                      DATA_DIR / "control-plane",
                                      SHARED_DEVICE_PLUGIN_DIR / "kubelet_internal_checkpoint")
                     if d.exists()] + ([str(MODEL_REPO_LINK)] if MODEL_REPO_LINK.is_symlink() else []),
    )


def cgroup_processes() -> list[int]:
    """Every process in the nodes' cgroups: containers, even those whose shim and runc state are gone."""
    pids: set[int] = set()
    for group in _cgroups():
        for procs in group.rglob("cgroup.procs"):
            try:
                pids.update(int(line) for line in procs.read_text().split())
            except OSError:
                continue
    pids.discard(os.getpid())
    return sorted(pids)


def _kill(pids: list[int], grace: float) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and any(Path(f"/proc/{pid}").exists() for pid in pids):
            time.sleep(0.1)


def _remove_cgroup(path: Path) -> None:
    for child in sorted((p for p in path.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
        try:
            child.rmdir()
        except OSError:
            pass
    try:
        path.rmdir()
    except OSError:
        pass


def clean(purge: bool = False, log=print) -> Leftovers:  # noqa: ANN001 - log is print-like
    """Remove the cluster from this host; return what was still there afterwards (empty when clean)."""
    # Kubelets and containerds first (they would restart containers), then the containers themselves.
    components = cluster_processes()
    not_shims = [pid for pid, cmd in components.items() if "containerd-shim" not in cmd]
    if not_shims:
        log(f"stopping {len(not_shims)} cluster processes")
        _kill(not_shims, grace=10)
    for runc_root, ids in _containers().items():
        if ids:
            log(f"removing {len(ids)} containers of {runc_root}")
        for container in ids:
            subprocess.run(["runc", "--root", str(runc_root), "delete", "--force", container], capture_output=True)
    orphans = cgroup_processes()
    if orphans:
        log(f"killing {len(orphans)} container processes left in the nodes' cgroups")
        _kill(orphans, grace=5)
    _kill(list(cluster_processes()), grace=5)  # the shims, once their containers are gone

    for point in sorted(_mounts(), key=lambda p: p.count("/"), reverse=True):
        subprocess.run(["umount", "--lazy", point], capture_output=True)
    for name in _interfaces():
        subprocess.run(["ip", "link", "delete", name], capture_output=True)

    dump = _iptables_dump()
    ours = set(_firewall_lines(dump))
    if ours:
        log(f"removing {len(ours)} iptables rules and chains (kube-proxy, CNI, aifn-cluster)")
        kept = "\n".join(line for line in dump.splitlines() if line not in ours) + "\n"
        subprocess.run(["iptables-restore"], input=kept, text=True, capture_output=True, check=True)

    for cgroup in _cgroups():
        _remove_cgroup(cgroup)

    saved = RUN_DIR / "sysctl-before.json"
    if saved.exists():
        for key, value in json.loads(saved.read_text()).items():
            if key in SYSCTLS:
                Path("/proc/sys", key).write_text(value)
    for directory in (RUN_DIR, DATA_DIR / "control-plane", *(node.kubelet_dir for node in NODES),
                      *(node.data_dir / "pod-logs" for node in NODES)):
        shutil.rmtree(directory, ignore_errors=True)
    for name in ("kubelet_internal_checkpoint", "kubelet.sock"):
        (SHARED_DEVICE_PLUGIN_DIR / name).unlink(missing_ok=True)
    if MODEL_REPO_LINK.is_symlink():
        MODEL_REPO_LINK.unlink()
        try:
            MODEL_REPO_LINK.parent.rmdir()  # /aifn, when nothing else is in it
        except OSError:
            pass
    if purge:
        shutil.rmtree(DATA_DIR, ignore_errors=True)
    return find_leftovers()
