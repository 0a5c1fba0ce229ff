"""Generate docs/events.md (subjects, fields, an example of each message) from the protos.

Conventions it reads from proto/c360/events/v1 and proto/c360/erp/v1 (and checks):

- an events file's leading comment names its subjects: "(c360.<source>.<aggregate>.*)";
- a published event is a top-level message whose comment starts with "<Name>:"; its subject
  is derived as the relay derives it (c360_platform.envelope.subject_for);
- an inbound message names its subject in its comment: "Subject: erp.invoice.issued.".

Usage: python tools/gen_event_docs.py [--check] [OUTPUT]   (default docs/events.md)
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc_tools  # type: ignore[import-untyped]
from google.protobuf import any_pb2, descriptor_pb2, descriptor_pool, json_format, message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor

from c360_platform.envelope import short_type, snake, subject_for

ROOT = Path(__file__).resolve().parent.parent
PROTO = ROOT / "proto"
PUBLISHED_DIR = "c360/events/v1"
INBOUND_DIR = "c360/erp/v1"
ENVELOPE = "c360.events.v1.Envelope"
EVENT_LOG = "c360/events/v1/event_log.proto"
_NOT_EVENTS = (f"{PUBLISHED_DIR}/envelope.proto", EVENT_LOG)
_PREFIX = re.compile(r"\((c360)\.([a-z][a-z0-9-]*)\.([a-z][a-z0-9_]*)\.\*\)")
_SUBJECT = re.compile(r"Subject:\s*([a-z0-9_.-]+[a-z0-9_])")
_MESSAGE_PATH, _FIELD_PATH, _ENUM_PATH, _VALUE_PATH, _PACKAGE_PATH = 4, 2, 5, 2, 2


class ConventionError(ValueError):
    """A proto file does not follow the conventions this generator reads."""


# --------------------------------------------------------------------------- reading


@dataclass
class ProtoFile:
    """One .proto file: its descriptor and the comments of its parts."""

    proto: descriptor_pb2.FileDescriptorProto
    comments: dict[tuple[int, ...], str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.proto.name

    @property
    def header(self) -> str:
        return self.comments.get((_PACKAGE_PATH,), "")

    def message_comment(self, index: int) -> str:
        return self.comments.get((_MESSAGE_PATH, index), "")

    def field_comment(self, message: int, index: int) -> str:
        return self.comments.get((_MESSAGE_PATH, message, _FIELD_PATH, index), "")


def _clean(text: str) -> str:
    return "\n".join(line.strip() for line in text.strip().splitlines())


def load() -> tuple[list[ProtoFile], descriptor_pool.DescriptorPool]:
    """Compile every proto (with comments) and return its files and a pool of all types."""
    sources = sorted(str(p.relative_to(PROTO)) for p in PROTO.rglob("*.proto"))
    includes = Path(grpc_tools.__file__).parent / "_proto"
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "set.pb"
        subprocess.run(
            [
                sys.executable,
                "-m",
                "grpc_tools.protoc",
                f"-I{PROTO}",
                f"-I{includes}",
                f"--descriptor_set_out={out}",
                "--include_imports",
                "--include_source_info",
                *sources,
            ],
            check=True,
        )
        fds = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())
    pool = descriptor_pool.DescriptorPool()
    files: list[ProtoFile] = []
    for proto in fds.file:
        pool.Add(proto)
        comments = {
            tuple(loc.path): _clean(loc.leading_comments)
            for loc in proto.source_code_info.location
            if loc.leading_comments.strip()
        }
        files.append(ProtoFile(proto, comments))
    return files, pool


# --------------------------------------------------------------------------- examples

_UUIDS = uuid.UUID("9a8b7c6d-0000-4000-8000-c360c360c360")
_STRINGS: dict[str, str] = {
    "display_name": "Ada Lovelace",
    "email": "ada@example.com",
    "phone": "+493090182000",
    "owner_id": "emp-0042",
    "previous_owner_id": "emp-0007",
    "label": "billing",
    "postal_code": "10117",
    "city": "Berlin",
    "region": "BE",
    "country": "DE",
    "role": "purchasing",
    "source": "web-form",
    "acquisition_source": "trade-fair",
    "acquisition_channel": "web",
    "currency": "EUR",
    "amount": "1250.00",
    "invoice_number": "INV-2025-000123",
    "payment_reference": "PAY-2025-000045",
    "issue_date": "2025-03-01",
    "due_date": "2025-03-31",
    "received_on": "2025-03-28",
    "erp_system": "sap-prod",
    "event_type": "c360.events.v1.CustomerRegistered",
    "aggregate_type": "customer",
    "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    "tracestate": "",
}
_LISTS: dict[str, list[str]] = {
    "emails": ["ada@example.com"],
    "phones": ["+493090182000"],
    "lines": ["Unter den Linden 1"],
    "tags": ["key-account"],
    "added": ["key-account"],
    "removed": ["prospect"],
}


def _scalar(f: FieldDescriptor) -> Any:
    name = f.name
    if f.type == FieldDescriptor.TYPE_STRING:
        if name.endswith("_id") and name not in _STRINGS:
            return str(uuid.uuid5(_UUIDS, name))
        return _STRINGS.get(name, name.replace("_", "-"))
    if f.type == FieldDescriptor.TYPE_BOOL:
        return True
    if f.enum_type is not None:
        values = [v for v in f.enum_type.values if v.number != 0]
        return (values or list(f.enum_type.values))[0].name
    if f.type in (FieldDescriptor.TYPE_FLOAT, FieldDescriptor.TYPE_DOUBLE):
        return 1.5
    return {"days_overdue": 14, "source_position": 42, "envelope_version": 1}.get(name, 1)


def example(
    desc: Descriptor,
    pool: descriptor_pool.DescriptorPool,
    *,
    oneof_choice: str | None = None,
    payload: Any = None,
) -> Any:
    """A valid example message of `desc` (built through the real descriptor)."""
    cls = message_factory.GetMessageClass(desc)
    doc: dict[str, Any] = {}
    for f in desc.fields:
        if f.containing_oneof is not None and f.name != oneof_choice:
            continue
        if f.message_type is not None:
            full = f.message_type.full_name
            if full == "google.protobuf.Timestamp":
                value: Any = "2025-03-01T09:15:00Z"
            elif full == "google.protobuf.Any":
                if payload is None:
                    continue
                value = payload
            else:
                value = json_format.MessageToDict(
                    example(f.message_type, pool), preserving_proto_field_name=True
                )
        elif f.is_repeated:
            value = _LISTS.get(f.name, [_scalar(f)])
        else:
            value = _scalar(f)
        if f.is_repeated and f.message_type is not None:
            value = [value]
        doc[f.name] = value
    if desc.full_name == "c360.erp.v1.Money" and "amount" in doc:
        doc["amount"] = "1250.00"
    return json_format.ParseDict(doc, cls(), descriptor_pool=pool)


def as_json(msg: Any, pool: descriptor_pool.DescriptorPool) -> str:
    doc = json_format.MessageToDict(msg, preserving_proto_field_name=True, descriptor_pool=pool)
    return json.dumps(doc, indent=2, ensure_ascii=False)


# --------------------------------------------------------------------------- rendering

_TYPE_NAMES = {
    FieldDescriptor.TYPE_STRING: "string",
    FieldDescriptor.TYPE_BOOL: "bool",
    FieldDescriptor.TYPE_INT32: "int32",
    FieldDescriptor.TYPE_INT64: "int64",
    FieldDescriptor.TYPE_UINT32: "uint32",
    FieldDescriptor.TYPE_UINT64: "uint64",
    FieldDescriptor.TYPE_DOUBLE: "double",
    FieldDescriptor.TYPE_FLOAT: "float",
    FieldDescriptor.TYPE_BYTES: "bytes",
}


def _type(f: FieldDescriptor) -> str:
    if f.message_type is not None:
        name = f.message_type.full_name
    elif f.enum_type is not None:
        name = f.enum_type.full_name
    else:
        name = _TYPE_NAMES.get(f.type, "?")
    name = name.removeprefix("c360.events.v1.").removeprefix("c360.erp.v1.")
    return f"repeated {name}" if f.is_repeated else name


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def field_table(pf: ProtoFile, index: int, desc: Descriptor) -> list[str]:
    rows = ["| # | field | type | meaning |", "|---|---|---|---|"]
    for j, f in enumerate(desc.fields):
        note = pf.field_comment(index, j)
        if f.containing_oneof is not None:
            note = (note + f" (one of `{f.containing_oneof.name}`)").strip()
        rows.append(f"| {f.number} | `{f.name}` | `{_type(f)}` | {_cell(note)} |")
    return rows


def _code(text: str) -> list[str]:
    return ["```json", text, "```"]


def _summary(comment: str, name: str) -> str:
    """The description of an event: its comment without the name and the subject."""
    text = _cell(_SUBJECT.sub("", comment.removeprefix(f"{name}:"))).rstrip(". ")
    return text[:1].upper() + text[1:] + "." if text else ""


def _subjects(pf: ProtoFile) -> tuple[str, list[str]]:
    """The source and the aggregates an events file's leading comment names."""
    found = [m.groups() for m in _PREFIX.finditer(pf.header)]
    if not found:
        raise ConventionError(
            f"{pf.name}: its leading comment must name its subjects, e.g."
            " '(c360.customer.customer.*)'"
        )
    sources = {source for _, source, _ in found}
    if len(sources) > 1:
        raise ConventionError(f"{pf.name}: its subjects name more than one source")
    return found[0][1], list(dict.fromkeys(aggregate for _, _, aggregate in found))


@dataclass(frozen=True)
class Event:
    """A published event of an events file: where it is and what the relay publishes it as."""

    index: int
    proto: descriptor_pb2.DescriptorProto
    desc: Descriptor
    comment: str
    source: str
    aggregate: str
    type: str
    subject: str


def _events(pf: ProtoFile, pool: descriptor_pool.DescriptorPool) -> list[Event]:
    """The events of a file. A file naming several aggregates (marketing's membership and
    touch) gives each event the one its name begins with (TouchSent: touch), else the first,
    unless its comment names its subject ("Subject: c360.<source>.<aggregate>.<event>."):
    the aggregate that records it, whose type the relay puts in its subject."""
    source, aggregates = _subjects(pf)
    events = []
    for i, mp in enumerate(pf.proto.message_type):
        comment = pf.message_comment(i)
        if not comment.startswith(f"{mp.name}:"):
            continue
        name = snake(mp.name)
        aggregate = next((a for a in aggregates if name.startswith(a + "_")), aggregates[0])
        named = _SUBJECT.search(comment)
        if named is not None:  # "Subject: c360.<source>.<aggregate>.<event>." says which
            aggregate = named.group(1).split(".")[2]
            if named.group(1) != subject_for(source, aggregate, mp.name):
                raise ConventionError(
                    f"{pf.name}: {mp.name} is published on"
                    f" {subject_for(source, aggregate, mp.name)}, not {named.group(1)}"
                )
        events.append(
            Event(
                i,
                mp,
                pool.FindMessageTypeByName(f"{pf.proto.package}.{mp.name}"),
                comment,
                source,
                aggregate,
                short_type(aggregate, mp.name),
                subject_for(source, aggregate, mp.name),
            )
        )
    return events


def render(files: list[ProtoFile], pool: descriptor_pool.DescriptorPool) -> str:
    out: list[str] = [
        "# c360 event contract",
        "",
        "<!-- Generated by `make docs` (tools/gen_event_docs.py) from proto/. Do not edit. -->",
        "",
        "Every event a c360 service stores is published on NATS JetStream (stream `C360`) as an",
        "`Envelope` whose `payload` is one of the messages below; ERP systems publish their own",
        "events to c360 on `erp.>`. How to consume them: [consumers.md](consumers.md); how the",
        "contract may change: [Contract evolution](consumers.md#contract-evolution).",
        "Examples are the protobuf JSON form (field names as in the `.proto`), which is also what",
        "`c360 subscribe` prints as `payload`.",
        "",
        "## Personal data",
        "",
        "Personal data is sealed with a key of the customer it belongs to before it is stored,",
        "so the streams carry it sealed too: in customer events names, e-mails, phones, the",
        "personal parts of postal addresses and merge reasons; in the service desk's the free",
        "texts (ticket subjects and descriptions, interactions, reasons, resolutions, comments,",
        "work-order summaries and notes, contact notes); in sales' a customer's lead's person,",
        "company, e-mail, phone and description, notes, opportunity names, lost reasons and",
        "activities' texts; in marketing's the address a touch went to, the provider's",
        "detail and an agent's note of a call. A lead captured for no customer (a prospect's) is",
        "sealed with a key of the lead's",
        "own, which only the sales service holds (it hands it to nobody: GetLead and ListLeads",
        "open it); `ForgetLead` deletes it and publishes `LeadForgotten`, as does forgetting the",
        "customer a prospect's lead was converted for. A sealed value is a string:",
        "`pii1~<customer id, 32 hex digits>~<base64url, unpadded: 12-byte nonce | AES-256-GCM",
        "ciphertext and tag>~`, with the customer id's 16 bytes as associated data. Consumers",
        "with an integration or service token get keys from `CustomerService.GetDataKeys`",
        "(`c360 subscribe` opens them unless given `--sealed`). `ForgetCustomer` deletes the",
        "key and publishes `CustomerForgotten`: from then on the customer's values cannot be",
        'opened anywhere (c360 shows them as "[forgotten]"); drop what you hold of them. The',
        "examples below show values in clear.",
        "",
    ]
    envelope_file = next(pf for pf in files if pf.name == f"{PUBLISHED_DIR}/envelope.proto")
    env_desc = pool.FindMessageTypeByName(ENVELOPE)
    published = [
        pf for pf in files if pf.name.startswith(PUBLISHED_DIR + "/") and pf.name not in _NOT_EVENTS
    ]
    first_payload: Any = None
    sections: list[str] = []
    for pf in sorted(published, key=lambda p: p.name):
        source, aggregates = _subjects(pf)
        named = ", ".join(f"`c360.{source}.{a}.*`" for a in aggregates)
        sections += [f"## Source `{source}`: {named}", ""]
        sections += [_cell(pf.header), ""]
        for event in _events(pf, pool):
            i, mp, desc, comment = event.index, event.proto, event.desc, event.comment
            subject = event.subject
            msg = example(desc, pool)
            if first_payload is None:
                first_payload = msg
            sections += [
                f"### {mp.name}",
                "",
                f"Subject `{subject}` · type `{desc.full_name}`",
                "",
                _summary(comment, mp.name),
                "",
                *field_table(pf, i, desc),
                "",
                *_code(as_json(msg, pool)),
                "",
            ]
    out += [
        "## The envelope",
        "",
        _cell(envelope_file.message_comment(0)),
        "",
        *field_table(envelope_file, 0, env_desc),
        "",
        "An example, with the first payload below packed in `payload`:",
        "",
    ]
    packed = any_pb2.Any()
    packed.Pack(first_payload, type_url_prefix="type.c360.dev/")
    env = example(env_desc, pool, payload=json_format.MessageToDict(packed, descriptor_pool=pool))
    env.source = env.aggregate_type = "customer"
    env.aggregate_id = env.customer_id
    env.causation_id = ""
    out += [*_code(as_json(env, pool)), "", *sections]
    out += inbound(files, pool)
    out += shared_types(
        files, pool, published + [f for f in files if f.name.startswith(INBOUND_DIR)]
    )
    return "\n".join(out).rstrip() + "\n"


def inbound(files: list[ProtoFile], pool: descriptor_pool.DescriptorPool) -> list[str]:
    """The section on what ERP systems publish to c360."""
    out: list[str] = []
    for pf in sorted(
        (p for p in files if p.name.startswith(INBOUND_DIR + "/")), key=lambda p: p.name
    ):
        out += ["## Inbound from ERP: `erp.>`", "", _cell(pf.header), ""]
        wrapper = next((i, m) for i, m in enumerate(pf.proto.message_type) if m.oneof_decl)
        w_index, w_proto = wrapper
        w_desc = pool.FindMessageTypeByName(f"{pf.proto.package}.{w_proto.name}")
        out += [
            f"### {w_proto.name}",
            "",
            _cell(pf.message_comment(w_index)),
            "",
            *field_table(pf, w_index, w_desc),
            "",
        ]
        choices = {
            f.message_type.full_name: f.name
            for f in w_desc.fields
            if f.containing_oneof and f.message_type is not None
        }
        for i, mp in enumerate(pf.proto.message_type):
            comment = pf.message_comment(i)
            subject = _SUBJECT.search(comment)
            if subject is None:
                continue
            desc = pool.FindMessageTypeByName(f"{pf.proto.package}.{mp.name}")
            msg = example(w_desc, pool, oneof_choice=choices[desc.full_name])
            out += [
                f"### {mp.name}",
                "",
                f"Subject `{subject.group(1)}` · type `{desc.full_name}` (in `{w_proto.name}."
                f"{choices[desc.full_name]}`)",
                "",
                _summary(comment, mp.name),
                "",
                *field_table(pf, i, desc),
                "",
                f"A whole `{w_proto.name}` as published:",
                "",
                *_code(as_json(msg, pool)),
                "",
            ]
    return out


def shared_types(
    files: list[ProtoFile], pool: descriptor_pool.DescriptorPool, documented: list[ProtoFile]
) -> list[str]:
    """Enums and helper messages the events use."""
    out = ["## Types used in events", ""]
    for pf in documented:
        for i, mp in enumerate(pf.proto.message_type):
            comment = pf.message_comment(i)
            if comment.startswith(f"{mp.name}:") or _SUBJECT.search(comment) or mp.oneof_decl:
                continue
            desc = pool.FindMessageTypeByName(f"{pf.proto.package}.{mp.name}")
            out += [f"### {mp.name}", "", _cell(comment), "", *field_table(pf, i, desc), ""]
        for i, ep in enumerate(pf.proto.enum_type):
            comment = pf.comments.get((_ENUM_PATH, i), "")
            values = ", ".join(f"`{v.name}` ({v.number})" for v in ep.value)
            out += [f"### {ep.name} (enum)", "", _cell(comment), "", values, ""]
    return out


def catalogue(files: list[ProtoFile], pool: descriptor_pool.DescriptorPool) -> str:
    """A Python module naming every published event's source, aggregate, short type and
    subject, for code that must know them without the services' code (the timeline checks
    the types a reader filters on against it)."""
    rows = [
        f"    {e.desc.full_name!r}:"
        f" Event({e.source!r}, {e.aggregate!r}, {e.type!r}, {e.subject!r}),"
        for pf in sorted(files, key=lambda p: p.name)
        if pf.name.startswith(PUBLISHED_DIR + "/") and pf.name not in _NOT_EVENTS
        for e in _events(pf, pool)
    ]
    return "\n".join(
        [
            '"""Every event c360 publishes: payload full name -> its source, aggregate, short type',
            "and subject. Generated by tools/gen_event_docs.py --catalogue (make proto) from",
            'proto/c360/events/v1; do not edit."""',
            "",
            "from typing import Final, NamedTuple",
            "",
            "",
            "class Event(NamedTuple):",
            "    source: str",
            "    aggregate: str",
            "    type: str",
            "    subject: str",
            "",
            "",
            "PUBLISHED: Final[dict[str, Event]] = {",
            *rows,
            "}",
            "",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", nargs="?", default=str(ROOT / "docs" / "events.md"))
    parser.add_argument(
        "--check", action="store_true", help="fail if OUTPUT differs from what would be generated"
    )
    parser.add_argument(
        "--catalogue",
        action="store_true",
        help="write the Python module of published events (catalogue.py) to OUTPUT instead",
    )
    args = parser.parse_args(argv)
    files, pool = load()
    text = catalogue(files, pool) if args.catalogue else render(files, pool)
    target = Path(args.output)
    if args.check:
        current = target.read_text() if target.exists() else ""
        if current != text:
            print(f"{target} is out of date with proto/; run `make docs`", file=sys.stderr)
            return 1
        return 0
    target.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
