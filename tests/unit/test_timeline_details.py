"""An entry's details are what `json_format.MessageToDict` gives for its payload, for every
payload type of the contract, whatever its fields hold (c360_timeline.details)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import pytest
from google.protobuf import json_format, message, symbol_database
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from hypothesis import given, settings
from hypothesis import strategies as st

from c360_timeline import details
from c360_timeline.projection import registry

PAYLOADS = sorted(registry().summaries)

_INTS = {
    FieldDescriptor.TYPE_INT32: st.integers(-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SINT32: st.integers(-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SFIXED32: st.integers(-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_UINT32: st.integers(0, 2**32 - 1),
    FieldDescriptor.TYPE_FIXED32: st.integers(0, 2**32 - 1),
    FieldDescriptor.TYPE_INT64: st.integers(-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SINT64: st.integers(-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SFIXED64: st.integers(-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_UINT64: st.integers(0, 2**64 - 1),
    FieldDescriptor.TYPE_FIXED64: st.integers(0, 2**64 - 1),
}


def _scalar(f: FieldDescriptor) -> st.SearchStrategy[Any]:
    if f.type == FieldDescriptor.TYPE_STRING:
        return st.text(max_size=8)
    if f.type == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if f.type == FieldDescriptor.TYPE_ENUM:
        assert f.enum_type is not None
        known = [v.number for v in f.enum_type.values]
        return st.sampled_from(known) | st.integers(0, 1000)  # unknown numbers too
    if f.type in _INTS:
        return _INTS[f.type]
    if f.type == FieldDescriptor.TYPE_BYTES:
        return st.binary(max_size=8)
    return st.floats(allow_nan=False, width=32 if f.type == FieldDescriptor.TYPE_FLOAT else 64)


def _fill(
    m: message.Message, draw: Callable[[st.SearchStrategy[Any]], Any], depth: int = 0
) -> None:
    d: Any = m.DESCRIPTOR
    for f in d.fields:
        if f.containing_oneof is not None and m.WhichOneof(f.containing_oneof.name):
            continue
        if not draw(st.booleans()):
            continue  # left unset: its default, or absent where it has presence
        if f.type == FieldDescriptor.TYPE_MESSAGE:
            if depth > 3:
                continue
            target = getattr(m, f.name)
            if f.message_type.full_name == "google.protobuf.Timestamp":
                stamps = st.integers(0, 4_102_444_800 * 10**9)
                if f.is_repeated:
                    for ns in draw(st.lists(stamps, max_size=3)):
                        target.add().FromNanoseconds(ns)
                else:
                    target.FromNanoseconds(draw(stamps))
            elif f.is_repeated:
                for _ in range(draw(st.integers(0, 3))):
                    _fill(target.add(), draw, depth + 1)
            else:
                target.SetInParent()
                _fill(target, draw, depth + 1)
        elif f.is_repeated:
            getattr(m, f.name).extend(draw(st.lists(_scalar(f), max_size=3)))
        else:
            setattr(m, f.name, draw(_scalar(f)))


def _message_class(name: str) -> type[message.Message]:
    return symbol_database.Default().GetSymbol(name)


@pytest.mark.parametrize("name", PAYLOADS)
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_details_are_what_message_to_dict_gives(name: str, data: st.DataObject) -> None:
    payload = _message_class(name)()
    _fill(payload, data.draw)
    expected = json_format.MessageToDict(
        payload, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    found = details.details_of(payload)
    assert found == expected
    assert list(found) == list(expected)  # in the same order


def test_the_contracts_payloads_are_converted_by_compiled_converters() -> None:
    """Every payload type of the contract today is one the converter compiles (none falls
    back to MessageToDict): the speed the module is for."""
    assert len(PAYLOADS) > 100
    for name in PAYLOADS:
        descriptor = cast(Descriptor, _message_class(name).DESCRIPTOR)
        assert details._compile(descriptor, set()) is not None, name


def test_a_type_with_a_kind_the_converter_leaves_converts_as_message_to_dict() -> None:
    from google.protobuf import struct_pb2, wrappers_pb2

    for m in (
        struct_pb2.Struct(fields={"a": struct_pb2.Value(number_value=1.5)}),
        wrappers_pb2.BytesValue(value=b"\x00\x01"),
    ):
        assert details.details_of(m) == json_format.MessageToDict(
            m, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
        )
