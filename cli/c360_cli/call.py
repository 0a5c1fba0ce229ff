"""`c360 call SERVICE METHOD [JSON]`: any method of any registered service, JSON in and out."""

from __future__ import annotations

import argparse
import importlib
import json
import pkgutil
import sys
from functools import cache
from typing import Any

from google.protobuf import descriptor_pool, json_format
from google.protobuf.descriptor import MethodDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass

import c360
from c360_cli.client import Client
from c360_cli.errors import EXIT_BAD_INPUT, CliError
from c360_cli.output import Output
from c360_platform import registry

_MULTICALLABLES = {
    (False, False): "unary_unary",
    (False, True): "unary_stream",
    (True, False): "stream_unary",
    (True, True): "stream_stream",
}
"""The channel's method for each (client streams, server streams)."""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `call`."""
    parser = subparsers.add_parser(
        "call",
        help="call any method of a registered service with a JSON request",
        description=(
            "Call METHOD of SERVICE (a name `c360 services` lists) with the request in JSON"
            " (proto3's JSON mapping, field names as in the .proto) and print the reply as JSON;"
            " a stream's replies one per line, as they come and without a deadline. A method"
            " that takes a stream of requests takes a JSON array."
        ),
    )
    parser.add_argument("service", metavar="SERVICE", help="a registered service, e.g. customer")
    parser.add_argument("method", metavar="METHOD", help="its method, e.g. GetCustomer")
    parser.add_argument(
        "request",
        metavar="JSON",
        nargs="?",
        default="{}",
        help="the request (default {}); - reads it from stdin",
    )
    parser.set_defaults(func=run)


@cache
def _load_contract() -> None:
    """Import every generated message module, so that the default pool knows every API."""
    for module in pkgutil.walk_packages(c360.__path__, f"{c360.__name__}."):
        if module.name.endswith("_pb2"):
            importlib.import_module(module.name)


def find_method(service: str, method: str) -> MethodDescriptor:
    """The method of a registered service's API, from the default descriptor pool."""
    try:
        api = registry.service(service).api
    except KeyError as exc:
        raise CliError(str(exc.args[0]), EXIT_BAD_INPUT) from None
    _load_contract()
    try:
        descriptor = descriptor_pool.Default().FindServiceByName(api)
    except KeyError:
        raise CliError(
            f"{api}, the API of {service}, is not in the generated c360 package"
        ) from None
    found = descriptor.methods_by_name.get(method)
    if found is None:
        names = ", ".join(descriptor.methods_by_name)
        raise CliError(f"{api} has no method {method!r}; it has {names}", EXIT_BAD_INPUT)
    return found


def _requests(text: str, method: MethodDescriptor) -> list[Message]:
    """The request(s) a JSON text holds: one, or for a stream of requests an array of them."""
    kind, name = GetMessageClass(method.input_type), method.input_type.full_name
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise CliError(f"not JSON: {exc}", EXIT_BAD_INPUT) from None
    items = document if method.client_streaming and isinstance(document, list) else [document]
    requests = []
    for item in items:
        if not isinstance(item, dict):
            raise CliError(f"not a {name}: expected a JSON object", EXIT_BAD_INPUT)
        try:
            requests.append(json_format.ParseDict(item, kind()))
        except json_format.ParseError as exc:
            raise CliError(f"not a {name}: {exc}", EXIT_BAD_INPUT) from None
    return requests


def _json(reply: Message) -> dict[str, Any]:
    return json_format.MessageToDict(reply, preserving_proto_field_name=True)


def run(args: argparse.Namespace) -> int:
    method = find_method(args.service, args.method)
    requests = _requests(sys.stdin.read() if args.request == "-" else args.request, method)
    reply_kind = GetMessageClass(method.output_type)
    out = Output(args.json)
    with Client(args) as client:
        multicallable = getattr(
            client.channel(args.service),
            _MULTICALLABLES[(method.client_streaming, method.server_streaming)],
        )
        call = multicallable(
            f"/{method.containing_service.full_name}/{method.name}",
            request_serializer=GetMessageClass(method.input_type).SerializeToString,
            response_deserializer=reply_kind.FromString,
        )
        argument: Any = iter(requests) if method.client_streaming else requests[0]
        if method.server_streaming:
            for reply in call(argument):
                out.json(_json(reply), compact=True)
        else:
            out.json(_json(call(argument, timeout=args.timeout)))
    return 0
