"""`make cluster` as a user runs it: clear refusals, a killed run's leftovers cleaned at the next start,
Ctrl-C and cluster-down leave nothing behind.

Runs before the other cluster tests (file order) and only when no cluster is up: it starts and
kills clusters of its own, and must never touch a cluster somebody is using.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.cluster import find_leftovers
from support.cluster.cluster import running_owner
from support.cluster.layout import KUBECONFIG

pytestmark = [pytest.mark.cluster, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]
CLUSTER = [sys.executable, str(ROOT / "hack" / "cluster.py")]


@pytest.fixture
def no_cluster_running() -> Iterator[None]:
    if os.geteuid() != 0:
        pytest.skip("the cluster needs root")
    if running_owner() is not None:
        pytest.skip("a cluster is running on this host; these tests start and kill their own")
    yield
    subprocess.run([*CLUSTER, "down"], capture_output=True, timeout=120)


class Up:
    """`hack/cluster.py up` in the background, its output in a file."""

    def __init__(self, log: Path) -> None:
        self.log = log
        self.process = subprocess.Popen([*CLUSTER, "up", "--no-app-images"], stdout=open(log, "wb"), stderr=subprocess.STDOUT,
                                        start_new_session=True)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_ready(self, timeout: float = 240) -> None:
        deadline = time.monotonic() + timeout
        while "export KUBECONFIG=" not in self.output():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"cluster did not come up (exit {self.process.poll()}):\n{self.output()}")
            time.sleep(1)


def test_refusals_name_the_problem_and_what_to_do(no_cluster_running: None, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """`hack/cluster.py up` as a user who is not root: exit 2, the problem and what to do, no traceback.

    Not root is simulated (the preflight's geteuid answers 65534): running the script as another
    user needs a checkout that user can read, which a private CI clone (mode 0700) is not.
    """
    import importlib.util

    import support.cluster.host as host

    spec = importlib.util.spec_from_file_location("cluster_cli", ROOT / "hack" / "cluster.py")
    assert spec and spec.loader
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    monkeypatch.setattr(host.os, "geteuid", lambda: 65534)
    monkeypatch.setattr(cli.signal, "signal", lambda *_: None)  # keep pytest's own signal handlers
    assert cli.main(["up"]) == 2
    stderr = capsys.readouterr().err
    assert "the cluster needs root" in stderr and "sudo make cluster" in stderr
    assert "Traceback" not in stderr
    assert running_owner() is None, "a refused start makes nothing"


def test_a_port_in_use_is_named(no_cluster_running: None) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 10259))
        taken.listen()
        result = subprocess.run([*CLUSTER, "up"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "port 127.0.0.1:10259 (kube-scheduler) is in use" in result.stderr
    assert not find_leftovers(), "a refused start changes nothing on the host"


def test_killed_run_is_cleaned_by_the_next_start_and_ctrl_c_leaves_nothing(
    no_cluster_running: None, tmp_path: Path
) -> None:
    first = Up(tmp_path / "first.log")
    first.wait_ready()
    # A second cluster on the same host is refused with what to do.
    second = subprocess.run([*CLUSTER, "up"], capture_output=True, text=True, timeout=60)
    assert second.returncode == 2 and "already running" in second.stderr and "make cluster-down" in second.stderr

    os.killpg(first.process.pid, signal.SIGKILL)  # no clean-up at all
    first.process.wait(timeout=30)
    left = find_leftovers()
    assert left.mounts and left.interfaces and left.firewall_rules, f"a killed run leaves things: {left.summary()}"
    assert subprocess.run([*CLUSTER, "status"], capture_output=True, text=True).stdout.count("mounts") == 1

    again = Up(tmp_path / "again.log")
    again.wait_ready()
    assert "cleaning what an earlier run left" in again.output()
    again.process.send_signal(signal.SIGINT)  # Ctrl-C
    assert again.process.wait(timeout=120) == 0, again.output()
    assert not find_leftovers(), find_leftovers().summary()
    assert not KUBECONFIG.exists()


def test_cluster_down_from_another_shell_stops_it(no_cluster_running: None, tmp_path: Path) -> None:
    up = Up(tmp_path / "up.log")
    up.wait_ready()
    down = subprocess.run([*CLUSTER, "down"], capture_output=True, text=True, timeout=120)
    assert down.returncode == 0 and "cluster-down: clean" in down.stdout, down.stdout + down.stderr
    assert up.process.wait(timeout=120) == 0, up.output()
    assert "removed by `make cluster-down`" in up.output()
    assert not find_leftovers(), find_leftovers().summary()
