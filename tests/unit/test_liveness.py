"""The operator's liveness (`GET /healthz`) tells the truth (issue 14, operator 8): it used to answer
200 whatever state the process was in.

A wedged reconcile worker and a dead Knative-settings thread are the two states only a restart
fixes. Neither can be caused for real in a unit test (each API request has a 30 s timeout, and the
thread now survives every Exception), so the pass is replaced by one that blocks and the thread by
one that has ended; the endpoint is served for real on a loopback port.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

import aifunction_operator.controller.state as module
from aifunction_operator.render.config import OperatorConfig
from aifunction_operator.controller.observability import Metrics, health_app, serve
from aifunction_operator.controller.reconcile import Outcome
from aifunction_operator.controller.state import OperatorState
from support.operator_process import http_get
from support.processes import free_port


BODY = {"metadata": {"namespace": "apps", "name": "fn", "uid": "u1", "resourceVersion": "1"}}


async def healthz(state: OperatorState) -> tuple[int, str]:
    port = free_port()
    runner = await serve(health_app(lambda: True, state.alive), port, "127.0.0.1")
    try:
        return await asyncio.to_thread(http_get, f"http://127.0.0.1:{port}/healthz", 5.0)
    finally:
        await runner.cleanup()


def test_a_wedged_reconcile_pass_fails_liveness_until_it_ends(monkeypatch: pytest.MonkeyPatch) -> None:
    release, running = threading.Event(), threading.Event()

    def wedged(*_: Any, **__: Any) -> Outcome:
        running.set()
        release.wait(10)
        return Outcome(status={})

    monkeypatch.setattr(module, "reconcile", wedged)
    state = OperatorState(None, OperatorConfig(), Metrics(), workers=1)  # type: ignore[arg-type]  # the pass is replaced
    state.stuck_after = 0.2

    async def scenario() -> list[tuple[int, str]]:
        answers = [await healthz(state)]
        task = asyncio.create_task(state.reconcile(("apps", "fn"), BODY))
        await asyncio.to_thread(running.wait, 5)
        await asyncio.sleep(0.4)
        answers.append(await healthz(state))
        problem = state.liveness_problem()
        release.set()
        await task
        answers.append(await healthz(state))
        assert problem is not None and "apps/fn" in problem
        return answers

    try:
        assert [status for status, _ in asyncio.run(scenario())] == [200, 503, 200]
    finally:
        state.stop()


def test_a_dead_knative_settings_thread_fails_liveness() -> None:
    state = OperatorState(None, OperatorConfig(knative_namespace="knative-serving"), Metrics(), workers=1)  # type: ignore[arg-type]
    ended = threading.Thread(target=lambda: None)
    ended.start()
    ended.join()
    state._knative_thread = ended
    try:
        assert asyncio.run(healthz(state))[0] == 503
        assert "knative-serving" in (state.liveness_problem() or "")
        state._stop.set()  # stopping: a finished thread is expected then
        assert state.liveness_problem() is None
    finally:
        state.stop()


def test_the_operator_command_serves_the_runtimes_liveness() -> None:
    """The wiring in `aifn operator`: /healthz asks the OperatorState (it was `lambda: True`)."""
    import inspect

    from aifunction_operator.commands import operator

    source = inspect.getsource(operator._main)
    assert "state.alive" in source and "lambda: True" not in source
