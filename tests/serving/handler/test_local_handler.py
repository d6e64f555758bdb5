"""The handler inside `aifn run`'s gateway process (LocalHandler), in front of a real Triton:
inline code, the local-handler-path annotation, CloudEvents, and schedules on a driven clock."""

from __future__ import annotations

import asyncio
import json
import sys
import textwrap
from pathlib import Path

import aiohttp
import pytest
import yaml
from aiohttp import web

from aifunction_operator.local.handler import LocalHandler, LocalHandlerError
from aifunction_operator.local.schedule import ManualClock
from aifunction_operator.spec import parse_function

pytestmark = [pytest.mark.triton, pytest.mark.timeout(300)]

CODE = textwrap.dedent(
    '''
    import json
    import numpy as np

    SEEN = []

    def lambda_handler(event, context):
        SEEN.append(event)
        if "cloudEvent" in event:
            return {"got": event["cloudEvent"]["type"]}
        pixels = np.asarray(json.loads(event["body"])["pixels"], dtype=np.float32).reshape(1, 8, 8)
        out = context.infer({"image": pixels})
        if json.loads(event["body"]).get("fail"):
            raise RuntimeError("asked to fail")
        return {"label": int(out["label"][0, 0])}
    '''
)


def function(module: str, extra: str = "", code: str | None = CODE, annotations: str = "") -> dict:
    handler = {"entrypoint": f"{module}:lambda_handler"}
    if code is not None:
        handler["code"] = code
    doc = yaml.safe_load(textwrap.dedent(f"""
        apiVersion: aifn.dev/v1alpha1
        kind: AIFunction
        metadata:
          name: digits-fn
          {annotations}
        spec:
          model: {{name: digits, repository: "pvc://aifn-models"}}
          {extra}
    """))
    doc["spec"]["handler"] = handler
    return doc


async def serve(local: LocalHandler, triton_url: str) -> tuple[web.AppRunner, str]:
    app = web.Application()
    local.mount(app)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    await local.start(triton_url)
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}"


def test_inline_code_predicts_and_errors_map(digits_triton, digits_data) -> None:
    images, truth = digits_data
    fn = parse_function(function("local_inline_app"))
    local = LocalHandler.for_function(fn, None)
    assert local is not None

    async def scenario() -> list:
        runner, url = await serve(local, digits_triton.http_url)
        try:
            async with aiohttp.ClientSession() as session:
                answers = []
                for i in (10, 11, 12):
                    async with session.post(f"{url}/", json={"pixels": images[i].ravel().tolist()}) as r:
                        answers.append((r.status, await r.json()))
                async with session.post(f"{url}/invoke", json={"pixels": images[0].ravel().tolist(), "fail": 1}) as r:
                    answers.append((r.status, await r.json()))
                async with session.post(f"{url}/", data=b"{no", headers={"Content-Type": "application/json"}) as r:
                    answers.append((r.status, await r.json()))
                async with session.post(f"{url}/", json={"pixels": images[13].ravel().tolist()}) as r:
                    answers.append((r.status, await r.json()))
                return answers
        finally:
            await local.close()
            await runner.cleanup()

    answers = asyncio.run(scenario())
    assert answers[:3] == [(200, {"label": int(truth[i])}) for i in (10, 11, 12)]
    assert answers[3][0] == 500 and answers[3][1]["error"] == "RuntimeError: asked to fail"
    assert answers[4][0] == 400 and "not valid JSON" in answers[4][1]["error"]
    assert answers[5] == (200, {"label": int(truth[13])})


def test_schedule_fires_on_a_driven_clock(digits_triton) -> None:
    schedules = 'triggers: {schedules: [{name: tick, cron: "*/5 * * * *", data: "{\\"report\\": 1}"}]}'
    fn = parse_function(function("local_sched_app", schedules))
    clock = ManualClock()
    local = LocalHandler.for_function(fn, None, clock=clock)

    async def scenario() -> None:
        runner, _ = await serve(local, digits_triton.http_url)
        try:
            for _ in range(100):
                if clock.sleepers:
                    break
                await asyncio.sleep(0.01)
            clock.advance(4 * 60)  # 00:04: not yet
            await asyncio.sleep(0.05)
            assert local.scheduler.firings == []
            clock.advance(60)  # 00:05
            for _ in range(200):
                if local.scheduler.firings:
                    break
                await asyncio.sleep(0.01)
        finally:
            await local.close()
            await runner.cleanup()

    asyncio.run(scenario())
    [firing] = local.scheduler.firings
    assert firing.status == 200 and firing.schedule == "tick"
    event = sys.modules["local_sched_app"].SEEN[-1]
    assert event["cloudEvent"]["type"] == "dev.knative.sources.ping"
    assert event["cloudEvent"]["source"].endswith("/pingsources/digits-fn-tick")
    assert json.loads(event["body"]) == {"report": 1}


def test_local_handler_path_annotation(tmp_path: Path, digits_triton, digits_data) -> None:
    code_dir = tmp_path / "code"
    code_dir.mkdir()
    (code_dir / "local_dir_app.py").write_text(CODE)
    function_file = tmp_path / "fn.yaml"
    fn = parse_function(function("local_dir_app", code=None, annotations="annotations: {aifn.dev/local-handler-path: ./code}"))
    local = LocalHandler.for_function(fn, function_file)
    assert local.code_dir == code_dir.resolve()
    images, truth = digits_data

    async def scenario() -> tuple[int, dict]:
        runner, url = await serve(local, digits_triton.http_url)
        try:
            async with aiohttp.ClientSession() as session:
                async with session.post(f"{url}/", json={"pixels": images[20].ravel().tolist()}) as r:
                    return r.status, await r.json()
        finally:
            await local.close()
            await runner.cleanup()

    assert asyncio.run(scenario()) == (200, {"label": int(truth[20])})


def test_code_that_only_the_cluster_has_is_a_clear_error() -> None:
    doc = function("x", code=None)
    doc["spec"]["handler"]["configMap"] = {"name": "cm", "key": "x.py"}
    with pytest.raises(LocalHandlerError, match="spec.handler.configMap.*local-handler-path"):
        LocalHandler.for_function(parse_function(doc), None)
    assert LocalHandler.for_function(parse_function({**doc, "spec": {"model": doc["spec"]["model"]}}), None) is None
