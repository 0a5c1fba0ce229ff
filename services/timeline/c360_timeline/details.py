"""An event's payload as the `details` of its timeline entry: what protobuf's
`json_format.MessageToDict(payload, preserving_proto_field_name=True,
always_print_fields_with_no_presence=True)` gives, made by a converter compiled once per
message type.

`MessageToDict` walks each message through its descriptor, field by field, asking of each
what kind it is and how it prints (in Python, with the upb runtime too): 12 % of the
timeline's applying thread during a rebuild (py-spy). The payloads of the contract hold
strings, booleans, integers, enums, nested messages, repeated fields and Timestamps; for
each message type the converter decides once how each field prints, and a message converts
as a loop over its set fields. A type holding anything else (maps, floats, bytes, other
well-known types, extensions) converts through `MessageToDict` itself. `tests/unit/
test_timeline_details.py` checks both give the same for every payload type of the contract.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from google.protobuf import json_format, message
from google.protobuf.descriptor import Descriptor, FieldDescriptor

Doc = dict[str, Any]
Convert = Callable[[Any], Any]

_AS_IS = {
    FieldDescriptor.TYPE_STRING,
    FieldDescriptor.TYPE_BOOL,
    FieldDescriptor.TYPE_INT32,
    FieldDescriptor.TYPE_SINT32,
    FieldDescriptor.TYPE_SFIXED32,
    FieldDescriptor.TYPE_UINT32,
    FieldDescriptor.TYPE_FIXED32,
}
"""Field types JSON prints as Python holds them."""
_AS_TEXT = {
    FieldDescriptor.TYPE_INT64,
    FieldDescriptor.TYPE_SINT64,
    FieldDescriptor.TYPE_SFIXED64,
    FieldDescriptor.TYPE_UINT64,
    FieldDescriptor.TYPE_FIXED64,
}
"""Field types JSON prints as decimal text (64-bit integers)."""

_LIST = object()

_compiled: dict[str, Callable[[message.Message], Doc] | None] = {}
"""Message type -> its converter, or None where `MessageToDict` converts it."""


def details_of(payload: message.Message) -> Doc:
    """The payload as `MessageToDict` gives it (see the module's docstring)."""
    d = cast(Descriptor, payload.DESCRIPTOR)
    if d.full_name not in _compiled:
        _compiled[d.full_name] = _compile(d, set())
    convert = _compiled[d.full_name]
    if convert is None:
        return _generic(payload)
    return convert(payload)


def _generic(payload: message.Message) -> Doc:
    return json_format.MessageToDict(
        payload, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )


def _compile(d: Descriptor, within: set[str]) -> Callable[[message.Message], Doc] | None:
    """The converter of messages of type `d`, or None if one of its fields (or of the types
    it nests) is of a kind left to `MessageToDict` (`within`: the types being compiled, so a
    recursive type is left to it too)."""
    if d.file.name.startswith("google/protobuf/") or d.full_name in within:
        return None
    within = within | {d.full_name}
    values: dict[str, Convert] = {}
    defaults: list[tuple[str, Any]] = []
    """The fields without presence, printed when unset: their default (a new list each time
    for a repeated field)."""
    for f in d.fields:
        value = _value(f, within)
        if value is None:
            return None
        values[f.name] = _each(value) if f.is_repeated else value
        if f.is_repeated:
            defaults.append((f.name, _LIST))
        elif not f.has_presence:
            defaults.append((f.name, value(f.default_value)))

    def convert(m: message.Message) -> Doc:
        doc = {f.name: values[f.name](v) for f, v in m.ListFields()}
        for name, default in defaults:
            if name not in doc:
                doc[name] = [] if default is _LIST else default
        return doc

    return convert


def _each(value: Convert) -> Convert:
    return lambda items: [value(v) for v in items]


def _value(f: FieldDescriptor, within: set[str]) -> Convert | None:
    """How one value of field `f` prints, or None if `MessageToDict` must print it."""
    if f.is_extension:
        return None
    if f.type in _AS_IS:
        return _same
    if f.type in _AS_TEXT:
        return str
    if f.type == FieldDescriptor.TYPE_ENUM:
        assert f.enum_type is not None
        if f.enum_type.full_name == "google.protobuf.NullValue":
            return None
        names = {v.number: v.name for v in f.enum_type.values}
        return lambda number: names.get(number, number)  # an unknown number prints as itself
    if f.type == FieldDescriptor.TYPE_MESSAGE:
        t = f.message_type
        assert t is not None
        if t.GetOptions().map_entry:
            return None
        if t.full_name == "google.protobuf.Timestamp":
            return _timestamp
        return _compile(t, within)
    return None  # floats, bytes, groups


def _same(value: Any) -> Any:
    return value


def _timestamp(value: Any) -> str:
    return str(value.ToJsonString())
