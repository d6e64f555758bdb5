"""The Python gRPC side of `aifn run`, behind Envoy, for functions whose protocol is grpc.

Envoy sends here health and server calls always, and the model's calls of Triton's
GRPCInferenceService while no replica is ready (proxy mode); warm calls go from Envoy straight
to the replicas' gRPC ports. Messages pass through as bytes; only the request's `model_name` is read (to refuse other
models with NOT_FOUND without starting Triton). Health (ServerLive, ServerReady and the
standard grpc.health.v1 Check) is answered here, as the HTTP gateway does; model calls go
through the same pool as HTTP (queue, cold start, least-loaded routing); a stream keeps one
replica for its whole life, and a stream idle for the function's timeoutSeconds (no message
either way) is ended with DEADLINE_EXCEEDED, so an abandoned stream cannot hold a replica
(and keep it from scaling to zero) forever. Repository, shared-memory, trace and log calls are not exposed
(UNIMPLEMENTED, here and in Envoy's routes): nothing but the function's model is loaded.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import grpc
from tritonclient.grpc import service_pb2

from .pool import ReplicaPool, Unavailable
from .replicas import Replica

log = logging.getLogger("aifn.run")

SERVICE = "/inference.GRPCInferenceService/"
MODEL_METHODS = {
    "ModelReady": service_pb2.ModelReadyRequest,
    "ModelMetadata": service_pb2.ModelMetadataRequest,
    "ModelInfer": service_pb2.ModelInferRequest,
    "ModelConfig": service_pb2.ModelConfigRequest,
    "ModelStatistics": service_pb2.ModelStatisticsRequest,
}
HEALTH_CHECK = "/grpc.health.v1.Health/Check"
SERVING = b"\x08\x01"  # grpc.health.v1.HealthCheckResponse{status: SERVING}, encoded
MAX_MESSAGE = 64 * 1024 * 1024


def _identity(data: bytes) -> bytes:
    return data


class GrpcProxy:
    """A grpc.aio server proxying one model's Triton gRPC API to the pool's replicas."""

    def __init__(
        self, model_name: str, pool: ReplicaPool, max_message_bytes: int = MAX_MESSAGE, stream_idle_timeout: float = 300.0
    ) -> None:
        self.model_name = model_name
        self.stream_idle_timeout = stream_idle_timeout
        self.pool = pool
        self.max_message_bytes = max_message_bytes
        self._channels: dict[int, grpc.aio.Channel] = {}
        self._server: grpc.aio.Server | None = None
        pool.before_stop.append(self._forget)

    async def start(self, host: str, port: int, *, read_timeout: float = 60.0, max_connections: int = 4096) -> int:
        """Listen on host:port (0 picks a port); returns the port.

        As for HTTP: a connection must finish its HTTP/2 handshake within `read_timeout`, one
        without any open stream closes after `read_timeout`, and at most `max_connections` are open.
        """
        options = [("grpc.max_receive_message_length", self.max_message_bytes),
                   ("grpc.max_send_message_length", self.max_message_bytes),
                   ("grpc.server_handshake_timeout_ms", int(read_timeout * 1000)),
                   ("grpc.max_connection_idle_ms", int(read_timeout * 1000)),
                   ("grpc.max_allowed_incoming_connections", max_connections)]
        self._server = grpc.aio.server(options=options)
        self._server.add_generic_rpc_handlers([_ProxyService(self)])
        bound = self._server.add_insecure_port(f"{host}:{port}")
        await self._server.start()
        return bound

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop(grace=2.0)
        for channel in self._channels.values():
            await channel.close()
        self._channels.clear()

    def count(self, method: str, code: str) -> None:
        """Count a finished gRPC call in the gateway's requests metric (endpoint grpc-<Method>)."""
        metrics = self.pool.metrics
        metrics.requests.labels(metrics.function, f"grpc-{method}", code).inc()

    async def unary(self, method: str, request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        """A model call: check the model name, take a replica, forward the bytes."""
        await self._check_model(method, request, context)
        replica = await self._acquire(context)
        try:
            call = self._channel(replica).unary_unary(SERVICE + method, _identity, _identity)
            response: bytes = await call(request, metadata=_forwarded(context))
            self.pool.record_response(replica)
            return response
        except grpc.aio.AioRpcError as exc:
            await self._relay(exc, replica, context)
            raise  # unreachable: _relay aborts
        finally:
            self.pool.release(replica)

    async def stream(self, requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
        """ModelStreamInfer: one replica for the whole stream; every request's model is checked; idle streams end."""
        replica = await self._acquire(context)
        loop = asyncio.get_running_loop()
        last_message = loop.time()
        idle = False
        try:
            call = self._channel(replica).stream_stream(SERVICE + "ModelStreamInfer", _identity, _identity)

            async def checked() -> AsyncIterator[bytes]:
                nonlocal last_message
                async for request in requests:
                    last_message = loop.time()
                    await self._check_model("ModelInfer", request, context)
                    yield request

            responses = call(checked(), metadata=_forwarded(context))

            async def watchdog() -> None:
                nonlocal idle
                while True:
                    remaining = last_message + self.stream_idle_timeout - loop.time()
                    if remaining <= 0:
                        idle = True
                        responses.cancel()
                        return
                    await asyncio.sleep(remaining)

            guard = loop.create_task(watchdog())
            try:
                async for response in responses:
                    last_message = loop.time()
                    yield response
            except grpc.aio.AioRpcError as exc:
                await self._relay(exc, replica, context)
            except asyncio.CancelledError:
                if not idle:
                    raise
            finally:
                guard.cancel()
            if idle:
                await context.abort(
                    grpc.StatusCode.DEADLINE_EXCEEDED,
                    f"stream idle for {self.stream_idle_timeout:g}s (timeoutSeconds) with no message either way; "
                    "it is closed so that it does not hold a Triton replica",
                )
        finally:
            self.pool.release(replica)

    async def _check_model(self, method: str, request: bytes, context: grpc.aio.ServicerContext) -> None:
        message = MODEL_METHODS[method]()
        try:
            message.ParseFromString(request)
        except Exception:  # noqa: BLE001 - protobuf's DecodeError and friends
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"{method}: the request is not a valid {type(message).__name__}")
        name = message.model_name if method == "ModelInfer" else message.name
        if name != self.model_name and not (method == "ModelStatistics" and name == ""):
            await context.abort(
                grpc.StatusCode.NOT_FOUND, f"unknown model '{name}': this function serves model '{self.model_name}'"
            )

    async def _acquire(self, context: grpc.aio.ServicerContext) -> Replica:
        try:
            return await self.pool.acquire()
        except Unavailable as exc:
            context.set_trailing_metadata((("retry-after", str(exc.retry_after)),))
            await context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))
            raise  # unreachable: abort raises

    async def _relay(self, exc: grpc.aio.AioRpcError, replica: Replica, context: grpc.aio.ServicerContext) -> None:
        if exc.code() == grpc.StatusCode.UNAVAILABLE:
            self.pool.report_broken(replica)
            await context.abort(
                grpc.StatusCode.UNAVAILABLE,
                f"Triton replica {replica.id} failed while serving the request ({exc.details()}); it is replaced on the next request",
            )
        await context.abort(exc.code(), exc.details() or exc.code().name)

    def _channel(self, replica: Replica) -> grpc.aio.Channel:
        channel = self._channels.get(replica.id)
        if channel is None:
            options = [("grpc.max_receive_message_length", self.max_message_bytes),
                       ("grpc.max_send_message_length", self.max_message_bytes)]
            channel = grpc.aio.insecure_channel(replica.process.grpc_url, options=options)
            self._channels[replica.id] = channel
        return channel

    async def _forget(self, replica: Replica) -> None:
        """Close the channel to a replica that is about to stop (Triton waits for open connections)."""
        channel = self._channels.pop(replica.id, None)
        if channel is not None:
            await channel.close()


class _ProxyService(grpc.GenericRpcHandler):
    """Routes every method name of the Triton service (and health) to the proxy."""

    def __init__(self, proxy: GrpcProxy) -> None:
        self.proxy = proxy

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        method: str = handler_call_details.method  # type: ignore[attr-defined]
        if method == HEALTH_CHECK:
            return _constant(SERVING)
        if not method.startswith(SERVICE):
            return None  # UNIMPLEMENTED
        name = method[len(SERVICE):]
        if name == "ServerLive":
            return _constant(service_pb2.ServerLiveResponse(live=True).SerializeToString())
        if name == "ServerReady":
            return _constant(service_pb2.ServerReadyResponse(ready=True).SerializeToString())
        if name == "ServerMetadata":
            return _constant(service_pb2.ServerMetadataResponse(name="aifn", version="v2").SerializeToString())
        if name in MODEL_METHODS:
            proxy = self.proxy

            async def model_call(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
                code = "OK"
                try:
                    return await proxy.unary(name, request, context)
                except BaseException:
                    code = _status_name(context)
                    raise
                finally:
                    proxy.count(name, code)

            return grpc.unary_unary_rpc_method_handler(model_call, _identity, _identity)
        if name == "ModelStreamInfer":
            return grpc.stream_stream_rpc_method_handler(self.proxy.stream, _identity, _identity)

        async def not_exposed(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, f"{name} is not exposed by the aifn gateway")
            return b""

        return grpc.unary_unary_rpc_method_handler(not_exposed, _identity, _identity)


def _constant(payload: bytes) -> grpc.RpcMethodHandler:
    """A handler answering every request with the same encoded message."""

    async def answer(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        return payload

    return grpc.unary_unary_rpc_method_handler(answer, _identity, _identity)


def _status_name(context: grpc.aio.ServicerContext) -> str:
    """The status a failed call ends with (set by abort), for metrics."""
    try:
        code = context.code()
    except Exception:  # noqa: BLE001 - older grpc versions have no code() on aio contexts
        return "UNKNOWN"
    return code.name if isinstance(code, grpc.StatusCode) else "UNKNOWN"


def _forwarded(context: grpc.aio.ServicerContext) -> tuple[tuple[str, str], ...]:
    """Client metadata worth passing on (not HTTP/2 pseudo-headers or grpc internals)."""
    return tuple(
        (key, value) for key, value in context.invocation_metadata() or ()
        if not key.startswith((":", "grpc-")) and key not in ("user-agent", "te", "content-type") and isinstance(value, str)
    )
