"""The Lambda side of the contract: API-Gateway-proxy events in, `{statusCode, headers, body}` out.

`build_event` makes the event a `lambda_handler(event, context)` receives, in the shape of
API Gateway's REST proxy integration (version 1.0 payload), plus `cloudEvent` (the
attributes) when the request carries a CloudEvent. `to_response` turns what the handler
returns into an HTTP response the way Lambda function URLs do: a dict with `statusCode` is
a proxy response; any other value is sent as a 200 JSON body.
"""

from __future__ import annotations

import base64
import binascii
import random
import time
import uuid
from collections.abc import Mapping
from typing import Any

from .cloudevents import is_cloudevent, parse_cloudevent
from .errors import BadRequest
from .http import HttpRequest, HttpResponse, body_text, dumps, error_response, loads

JSON_TYPES = ("application/json",)
STAGE = "aifn"


def request_id(request: HttpRequest) -> str:
    """The caller's x-request-id, or a fresh random (version 4) UUID."""
    # random.getrandbits instead of uuid4(): os.urandom per request showed up in profiles.
    return request.header("x-request-id") or str(uuid.UUID(int=random.getrandbits(128), version=4))


def build_event(
    request: HttpRequest, req_id: str, resource: str | None = None, path_parameters: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """The API-Gateway-proxy event for `request` (on a declared route: its template and parameters);
    BadRequest names what is malformed."""
    event: dict[str, Any] = {
        "resource": resource or request.path,
        "path": request.path,
        "httpMethod": request.method.upper(),
        "headers": dict(request.headers),
        "multiValueHeaders": {name: [value] for name, value in request.headers.items()},
        "queryStringParameters": dict(request.query) or None,
        "multiValueQueryStringParameters": {k: [v] for k, v in request.query.items()} or None,
        "pathParameters": dict(path_parameters) if path_parameters else None,
        "stageVariables": None,
        "requestContext": {
            "requestId": req_id,
            "httpMethod": request.method.upper(),
            "path": request.path,
            "stage": STAGE,
            "requestTimeEpoch": int(time.time() * 1000),
            "identity": {"sourceIp": request.source_ip, "userAgent": request.header("user-agent") or None},
        },
    }
    if is_cloudevent(request):
        cloud_event = parse_cloudevent(request)
        event["cloudEvent"] = cloud_event.attributes
        event["body"], event["isBase64Encoded"] = cloud_event.body, cloud_event.is_base64
        return event
    if resource is None:  # a declared route's function reads its body itself, malformed or not
        check_json_body(request)
    event["body"], event["isBase64Encoded"] = body_text(request.body, request.content_type)
    return event


def check_json_body(request: HttpRequest) -> Any:
    """Parse a body declared as JSON; BadRequest when it is not valid JSON. None for other types."""
    if request.content_type not in JSON_TYPES or not request.body:
        return None
    try:
        return loads(request.body)
    except ValueError as exc:
        raise BadRequest(f"request body: Content-Type is application/json but the body is not valid JSON ({exc})") from None


def to_response(result: Any) -> HttpResponse:
    """The HTTP response for a handler's return value; a malformed proxy response is a 500."""
    if isinstance(result, Mapping) and "statusCode" in result:
        return _proxy_response(result)
    try:
        return HttpResponse(200, dumps(result), {"content-type": "application/json"})
    except TypeError as exc:
        return error_response(500, f"the handler returned a value that is not JSON serializable: {exc}")


def _proxy_response(result: Mapping[str, Any]) -> HttpResponse:
    status = result["statusCode"]
    if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
        return error_response(500, f"the handler returned statusCode {status!r}; it must be an integer 100-599")
    headers = {str(k).lower(): str(v) for k, v in (result.get("headers") or {}).items()}
    for name, values in (result.get("multiValueHeaders") or {}).items():
        headers.setdefault(str(name).lower(), ", ".join(str(v) for v in values))
    body = result.get("body")
    if body is None:
        payload = b""
    elif result.get("isBase64Encoded"):
        try:
            payload = base64.b64decode(body, validate=True)
        except (binascii.Error, TypeError, ValueError):
            return error_response(500, "the handler returned isBase64Encoded true but body is not valid base64")
    elif isinstance(body, str):
        payload = body.encode()
    elif isinstance(body, bytes):
        payload = body
    else:
        try:
            payload = dumps(body)
        except TypeError as exc:
            return error_response(500, f"the handler returned a body that is not JSON serializable: {exc}")
    headers.setdefault("content-type", "application/json")
    return HttpResponse(status, payload, headers)
