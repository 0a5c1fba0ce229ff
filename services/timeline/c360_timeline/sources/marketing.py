"""Marketing's memberships, touches and calls (source `marketing`): their summaries and the
`marketing` part of the profile, which clients read in Profile.attributes.

The part holds the segments the customer is in now (with the condition that put them there),
the last touch and the customer's last response (opened, clicked, replied or unsubscribed:
not a delivery, failure or bounce), the last call from a call list, and the counts behind
the response rate (touches, and touches with a click or a reply). Provenance paths:
"marketing.segments[<segment_id>]", "marketing.last_touch", "marketing.last_response",
"marketing.last_call".
"""

from __future__ import annotations

from collections.abc import Callable

from c360.events.v1 import marketing_events_pb2 as ev
from c360_platform.vocabulary import Words
from c360_timeline.projection import Doc, Entry, Fold, SourcePlugin, copy_provenance, set_by, unset

SECTION = "marketing"
CHANNELS = Words(ev.MarketingChannel)
RESPONSES = Words(ev.TouchResponseKind)
RESPONDING = ("clicked", "replied")
THE_CUSTOMERS = ("opened", "clicked", "replied", "unsubscribed")
"""Reports of what the customer did; the others (delivered, failed, bounced) are the
delivery's, and are no response of theirs: the profile's last response is one of these."""


def _channel(d: Doc) -> str:
    return CHANNELS.of_name(d.get("channel", ""))


def _response(d: Doc) -> str:
    return RESPONSES.of_name(d.get("kind", ""))


def _spoken(word: str) -> str:
    return {"email": "e-mail", "sms": "SMS"}.get(word, word.replace("_", " "))


def _segment(verb: str) -> Callable[[Doc], str]:
    def summary(d: Doc) -> str:
        text = f"{verb} segment “{d.get('segment_name', '')}”"
        return f"{text}: {d['condition']}" if d.get("condition") else text

    return summary


def _touch_sent(d: Doc) -> str:
    text = f"Campaign “{d.get('campaign_name', '')}” sent by {_spoken(_channel(d))}"
    return f"{text} (offer: {d['offer']})" if d.get("offer") else text


def _campaign(d: Doc) -> str:
    """“Winter in Latvia” ("" before events carried the campaign's name): which campaign a
    response or conversion is of, among the several that reached the customer."""
    return f" “{d['campaign_name']}”" if d.get("campaign_name") else ""


def _responded(d: Doc) -> str:
    text = f"Campaign{_campaign(d)} response: {_response(d).replace('_', ' ')}"
    return f"{text} ({d['detail']})" if d.get("detail") else text


def _converted(d: Doc) -> str:
    amount = f"{d.get('amount', '')} {d.get('currency', '')}"
    return f"Campaign{_campaign(d)} conversion: {amount} attributed"


CALL_OUTCOMES = {
    "reached": "reached",
    "no_answer": "no answer",
    "call_back": "call back",
    "not_interested": "not interested",
    "interested": "interested (a sales lead)",
}


def _called(d: Doc) -> str:
    outcome = CALL_OUTCOMES.get(d.get("outcome", ""), d.get("outcome", "").replace("_", " "))
    text = f"Campaign{_campaign(d)} call by {d.get('agent_id', '')}: {outcome}"
    if d.get("call_back_at"):
        text += f" at {d['call_back_at'][:16].replace('T', ' ')} UTC"
    return f"{text} (“{d['note']}”)" if d.get("note") else text


SUMMARIES: dict[str, Callable[[Doc], str]] = {
    "c360.events.v1.SegmentEntered": _segment("Entered"),
    "c360.events.v1.SegmentLeft": _segment("Left"),
    "c360.events.v1.TouchSent": _touch_sent,
    "c360.events.v1.TouchResponded": _responded,
    "c360.events.v1.TouchConverted": _converted,
    "c360.events.v1.CallRecorded": _called,
}


def empty_marketing() -> Doc:
    return {
        "segments": {},
        "last_touch": None,
        "last_response": None,
        "touches": 0,
        "responded": [],
        "response_rate": 0.0,
        "last_call": None,
    }


def _rate(m: Doc) -> None:
    m["response_rate"] = round(len(m["responded"]) / m["touches"], 4) if m["touches"] else 0.0


def _entered(p: Doc, entry: Entry) -> None:
    d = entry.details
    p[SECTION]["segments"][d["segment_id"]] = {
        "name": d.get("segment_name", ""),
        "since": entry.occurred_at.isoformat(),
        "condition": d.get("condition", ""),
    }
    set_by(p, f"marketing.segments[{d['segment_id']}]", entry)


def _left(p: Doc, entry: Entry) -> None:
    segment_id = entry.details.get("segment_id", "")
    if p[SECTION]["segments"].pop(segment_id, None) is not None:
        unset(p, f"marketing.segments[{segment_id}]")


def _sent(p: Doc, entry: Entry) -> None:
    m, d = p[SECTION], entry.details
    m["touches"] += 1
    m["last_touch"] = {
        "campaign_id": d.get("campaign_id", ""),
        "campaign_name": d.get("campaign_name", ""),
        "channel": _channel(d),
        "at": entry.occurred_at.isoformat(),
    }
    set_by(p, "marketing.last_touch", entry)
    _rate(m)


def _responded_fold(p: Doc, entry: Entry) -> None:
    m, d = p[SECTION], entry.details
    kind = _response(d)
    if kind in THE_CUSTOMERS:
        m["last_response"] = {
            "campaign_id": d.get("campaign_id", ""),
            "campaign_name": d.get("campaign_name", ""),
            "kind": kind,
            "at": entry.occurred_at.isoformat(),
        }
        set_by(p, "marketing.last_response", entry)
    if kind in RESPONDING and entry.aggregate_id not in m["responded"]:
        m["responded"] = sorted([*m["responded"], entry.aggregate_id])
    _rate(m)


def _called_fold(p: Doc, entry: Entry) -> None:
    d = entry.details
    p[SECTION]["last_call"] = {
        "campaign_id": d.get("campaign_id", ""),
        "campaign_name": d.get("campaign_name", ""),
        "agent_id": d.get("agent_id", ""),
        "outcome": d.get("outcome", ""),
        "at": entry.occurred_at.isoformat(),
    }
    set_by(p, "marketing.last_call", entry)


FOLDS: dict[str, Fold] = {
    "membership.segment_entered": _entered,
    "membership.segment_left": _left,
    "touch.sent": _sent,
    "touch.responded": _responded_fold,
    "call.recorded": _called_fold,
}


def _later(mine: Doc | None, theirs: Doc | None) -> bool:
    return theirs is not None and (mine is None or theirs["at"] > mine["at"])


def join(p: Doc, other: Doc) -> None:
    """Segments of both; the later last touch and response; counts added."""
    m, theirs = p[SECTION], other[SECTION]
    for segment_id, segment in theirs["segments"].items():
        if segment_id not in m["segments"]:
            m["segments"][segment_id] = segment
            copy_provenance(p, other, f"marketing.segments[{segment_id}]")
    for key in ("last_touch", "last_response", "last_call"):
        if _later(m.get(key), theirs.get(key)):
            m[key] = theirs[key]
            copy_provenance(p, other, f"marketing.{key}")
    m["touches"] += theirs["touches"]
    m["responded"] = sorted({*m["responded"], *theirs["responded"]})
    _rate(m)


PLUGIN = SourcePlugin(
    name="marketing",
    summaries=SUMMARIES,
    folds=FOLDS,
    section=SECTION,
    empty_section=empty_marketing,
    join=join,
    # Segment changes are not contacts; touches are outbound, not the customer's doing.
    contact=False,
)
