"""`aifn invoke`: send one inference request to a running function (local or in a cluster) and print the outputs.

Inputs come from `--input NAME=VALUE` (VALUE: a JSON array, `@file.json`, or a `.npy` file)
or `--request FILE.json` (a KServe v2 JSON request); datatypes come from the model's metadata
when a value does not say. Built on tritonclient.http.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

EXIT_FAILED = 1
EXIT_USAGE = 2
DEFAULT_LOCAL_URL = "http://127.0.0.1:8080"


class InvokeError(Exception):
    """A problem the user can fix; the message says which argument."""


def register(subparsers: Any) -> None:
    """Add `invoke`."""
    p = subparsers.add_parser(
        "invoke",
        help="send an inference request to a running function and print the outputs",
        description="Send one KServe v2 inference request. TARGET is a URL (http://127.0.0.1:8080 for aifn run, "
        "or the function's cluster URL) or an AIFunction YAML file (its model, served at --url).",
    )
    p.add_argument("target", help="function URL, or AIFunction YAML file")
    p.add_argument("--url", default=DEFAULT_LOCAL_URL, help=f"where a YAML TARGET is served (default {DEFAULT_LOCAL_URL})")
    p.add_argument("--gateway", metavar="URL", help="send the request to this address with TARGET's host as the Host header "
                   "(a gateway that routes by host, e.g. make cluster's: $(cat .aifn/cluster/gateway))")
    p.add_argument("--model", help="model name (default: from the YAML file, or the only model the server lists)")
    p.add_argument("--input", "-i", action="append", default=[], metavar="NAME=VALUE",
                   help="an input tensor: JSON array, @file.json, or file.npy; repeatable")
    p.add_argument("--request", type=Path, help="a KServe v2 JSON request file ({\"inputs\": [...]})")
    p.add_argument("--output", "-o", choices=["text", "json"], default="text", help="how to print the outputs")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds to wait (a cold start included)")
    p.set_defaults(command=run)


def run(args: argparse.Namespace) -> int:
    """Send the request; 0 on success, 1 when the server refused it, 2 on bad arguments."""
    import numpy as np  # noqa: PLC0415 - keep `aifn render` light
    import tritonclient.http as httpclient  # noqa: PLC0415
    from tritonclient.utils import InferenceServerException  # noqa: PLC0415

    try:
        url, model = _target(args)
        parsed = urlsplit(url if "://" in url else f"http://{url}")
        gateway = args.gateway
        address = urlsplit(gateway if "://" in gateway else f"http://{gateway}") if gateway else parsed
        headers = {"Host": parsed.netloc} if gateway else None
        client = httpclient.InferenceServerClient(
            url=address.netloc, ssl=address.scheme == "https", connection_timeout=args.timeout, network_timeout=args.timeout
        )
        model = model or _only_model(f"{address.scheme}://{address.netloc}", headers)
        metadata = client.get_model_metadata(model, headers=headers)
        tensors = _tensors(args, metadata, np)
    except InvokeError as exc:
        print(f"aifn invoke: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except InferenceServerException as exc:
        print(f"aifn invoke: {url}: {exc.message()}", file=sys.stderr)
        return EXIT_FAILED
    except OSError as exc:
        print(f"aifn invoke: cannot reach {url}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    inputs = []
    for name, (datatype, array) in tensors.items():
        tensor = httpclient.InferInput(name, list(array.shape), datatype)
        tensor.set_data_from_numpy(array, binary_data=True)
        inputs.append(tensor)
    try:
        result = client.infer(model, inputs, headers=headers)
    except InferenceServerException as exc:
        print(f"aifn invoke: {model}: {exc.message()}", file=sys.stderr)
        return EXIT_FAILED
    except OSError as exc:
        print(f"aifn invoke: {url}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    outputs = {o["name"]: result.as_numpy(o["name"]) for o in result.get_response()["outputs"]}
    if args.output == "json":
        print(json.dumps({name: {"shape": list(a.shape), "data": a.tolist()} for name, a in outputs.items()}))
    else:
        for name, array in outputs.items():
            print(f"{name} {array.dtype} {list(array.shape)}:\n{np.array2string(array, precision=4, threshold=200)}")
    return 0


def _target(args: argparse.Namespace) -> tuple[str, str | None]:
    target = args.target
    if target.endswith((".yaml", ".yml")):
        from .inputs import InputError, load_functions  # noqa: PLC0415

        try:
            (fn,) = load_functions(target)
        except InputError as exc:
            raise InvokeError(str(exc)) from None
        except ValueError:
            raise InvokeError(f"{target}: holds more than one function") from None
        return args.url, args.model or fn.spec.model.name
    return target, args.model


def _only_model(url: str, headers: dict[str, str] | None) -> str:
    import urllib.request  # noqa: PLC0415

    try:
        with urllib.request.urlopen(urllib.request.Request(url.rstrip("/") + "/v2", headers=headers or {}), timeout=10) as resp:
            models = json.loads(resp.read()).get("models") or []
    except (OSError, ValueError):
        models = []
    if len(models) != 1:
        raise InvokeError("--model is needed: the server does not name exactly one model")
    return str(models[0])


def _tensors(args: argparse.Namespace, metadata: dict[str, Any], np: Any) -> dict[str, tuple[str, Any]]:
    """name -> (datatype, array) from --request and --input."""
    from .tensor_values import ValueProblem, to_array  # noqa: PLC0415 - numpy only when invoking

    declared = {i["name"]: i["datatype"] for i in metadata.get("inputs", [])}
    tensors: dict[str, tuple[str, Any]] = {}
    if args.request:
        try:
            body = json.loads(args.request.read_text())
            for index, item in enumerate(body["inputs"]):
                dtype = item.get("datatype") or declared.get(item["name"])
                try:
                    array = to_array(item["data"], dtype).reshape(item["shape"])
                except ValueProblem as exc:
                    raise InvokeError(f"--request {args.request}: inputs[{index}] ({item['name']!r}): {exc}") from None
                tensors[item["name"]] = (dtype, array)
        except RecursionError:
            raise InvokeError(f"--request {args.request}: nested too deeply to be a KServe v2 request") from None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise InvokeError(f"--request {args.request}: not a usable KServe v2 request ({type(exc).__name__}: {exc})") from None
    for spec in args.input:
        name, sep, value = spec.partition("=")
        if not sep or not name:
            raise InvokeError(f"--input {spec!r}: expected NAME=VALUE")
        if name not in declared:
            raise InvokeError(f"--input {name}: model {metadata.get('name')!r} has inputs {', '.join(declared) or 'none'}")
        dtype = declared[name]
        tensors[name] = (dtype, _load_value(value, dtype, np, f"--input {name}"))
    if not tensors:
        raise InvokeError(f"no input given: use --input NAME=VALUE or --request FILE (model inputs: {', '.join(declared)})")
    return tensors


def _load_value(value: str, dtype: str, np: Any, where: str) -> Any:
    from .tensor_values import ValueProblem, to_array  # noqa: PLC0415 - numpy only when invoking

    try:
        if value.endswith(".npy"):
            return to_array(np.load(value, allow_pickle=False), dtype)
        text = Path(value[1:]).read_text() if value.startswith("@") else value
        return to_array(json.loads(text), dtype)
    except ValueProblem as exc:
        raise InvokeError(f"{where}: {exc}") from None
    except RecursionError:
        raise InvokeError(f"{where}: {value[:40]!r}... is nested too deeply") from None
    except (OSError, ValueError) as exc:
        raise InvokeError(f"{where}: cannot read {value!r} as {dtype} ({exc})") from None
