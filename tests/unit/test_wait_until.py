"""support.processes.wait_until, the suite's one polling helper: what it returns and what a timeout says."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest
from support.processes import Component, free_port, wait_until


def test_returns_the_first_truthy_value_of_the_probe() -> None:
    values = iter([None, [], {"ready": True}])
    assert wait_until("the third answer", lambda: next(values), 5, interval=0) == {"ready": True}


def test_a_timeout_names_what_the_last_value_and_the_diagnosis() -> None:
    with pytest.raises(TimeoutError) as raised:
        wait_until("an InvalidSpec Event", lambda: [], 0.05, interval=0.01, diagnose=lambda: "Events: FailedScheduling")
    message = str(raised.value)
    assert message.startswith("timed out after 0s waiting for an InvalidSpec Event (last: [])")
    assert message.endswith("\nEvents: FailedScheduling")


def test_a_false_probe_is_not_reported_as_a_value() -> None:
    with pytest.raises(TimeoutError, match=r"waiting for nothing$"):
        wait_until("nothing", lambda: False, 0.01, interval=0.01)


def test_the_probe_runs_at_least_once_and_its_errors_propagate() -> None:
    def probe() -> bool:
        raise AssertionError("the process died")

    with pytest.raises(AssertionError, match="the process died"):
        wait_until("something", probe, 0)


def test_an_exited_component_fails_at_once_with_its_output(tmp_path: Path) -> None:
    component = Component("sayer", [sys.executable, "-c", "print('bye')"], tmp_path / "sayer.log")
    component.start()
    wait_until("sayer to exit", lambda: component.exit_code() is not None, 30, interval=0.01)
    with pytest.raises(RuntimeError, match=r"sayer exited with status 0 while waiting for forever; last output:\nbye"):
        wait_until("forever", lambda: False, 60, component)


def test_free_port_can_be_bound() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", free_port()))
