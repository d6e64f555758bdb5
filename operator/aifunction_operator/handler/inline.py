"""Run synchronous user code on the event loop's thread, suspended while the model answers.

With AIFN_HANDLER_EXECUTION=inline a synchronous handler runs in a greenlet on the event
loop thread instead of a worker thread; `context.infer()` switches back to the loop, which
awaits the model call and switches the handler back in with the result (the technique
SQLAlchemy's asyncio layer uses). That removes four cross-thread hand-offs per request. The
price: anything else in the handler that blocks (time.sleep, a synchronous HTTP client, a
long computation) stalls every request of the process, so it is opt-in, for handlers whose
only waiting is `context.infer`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import greenlet


class InlineGreenlet(greenlet.greenlet):  # type: ignore[misc]
    """The greenlet a synchronous handler runs in."""


def in_inline_code() -> bool:
    """True inside a handler started by `run_inline`."""
    return isinstance(greenlet.getcurrent(), InlineGreenlet)


def await_inline(awaitable: Awaitable[Any]) -> Any:
    """From code running under `run_inline`: suspend until `awaitable` is done; its result or exception."""
    return greenlet.getcurrent().parent.switch(awaitable)


async def run_inline(function: Callable[..., Any], *args: Any) -> Any:
    """Call `function(*args)` in a greenlet, awaiting on its behalf whatever it hands to `await_inline`."""
    runner = InlineGreenlet(function)
    value = runner.switch(*args)
    while not runner.dead:
        try:
            result = await value
        except BaseException as exc:  # delivered into the handler, which may catch it
            value = runner.throw(exc)
        else:
            value = runner.switch(result)
    return value
