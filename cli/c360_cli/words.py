"""The CLI's words for the contract's enums: the platform's vocabulary, spelt with `-`."""

from __future__ import annotations

import argparse
import difflib
from collections.abc import Mapping
from typing import Any

from c360.events.v1 import contact_events_pb2 as contact_events
from c360.events.v1 import customer_events_pb2 as customer_events
from c360.events.v1 import field_service_events_pb2 as field_service_events
from c360.events.v1 import knowledge_events_pb2 as knowledge_events
from c360.events.v1 import service_contract_events_pb2 as service_contract_events
from c360.events.v1 import ticket_events_pb2 as ticket_events
from c360_platform.vocabulary import Words


class CliWords:
    """One enum's `Words` as the CLI writes and reads them: `_` spelt `-` (web-form), and a
    shorter word where the CLI has one (`internal_note` is `note`)."""

    def __init__(self, words: Words, short: Mapping[str, str] | None = None) -> None:
        self.vocabulary = words
        shorter = dict(short or {})
        self._spelt = {w: shorter.get(w, w.replace("_", "-")) for w in words.words}
        self._words = {spelt: word for word, spelt in self._spelt.items()}

    @property
    def words(self) -> list[str]:
        """Every word, in the enum's order (for argparse `choices` and help texts)."""
        return list(self._words)

    def word(self, value: int) -> str:
        """The word of a value; "" for the zero value or one this CLI does not know."""
        return self._spelt.get(self.vocabulary.word(value), "")

    def spelt(self, word: str) -> str:
        """A word of the vocabulary (`web_form`) as the CLI spells it (`web-form`); one it
        does not know as it is."""
        return self._spelt.get(word, word)

    def value(self, word: str) -> Any:
        """The value of a word (KeyError naming the words if there is none)."""
        if word not in self._words:
            raise KeyError(f"{word!r} is not one of {', '.join(self._words)}")
        return self.vocabulary.value(self._words[word])

    def value_or_zero(self, word: str) -> Any:
        """The value of a word; 0 (unspecified) for "" or an unknown word."""
        return self.vocabulary.value_or_zero(self._words.get(word, ""))

    def parse(self, text: str) -> str:
        """An argparse type: a word in any case, with `-` or `_` (web-form, WEB_FORM)."""
        word = text.strip().lower().replace("_", "-")
        if word not in self._words:
            close = difflib.get_close_matches(word, self._words, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise argparse.ArgumentTypeError(f"must be one of {', '.join(self._words)}{hint}")
        return word


CUSTOMER_KINDS = CliWords(Words(customer_events.CustomerKind))
CONSENT_CHANNELS = CliWords(Words(customer_events.ConsentChannel))
CONSENT_PURPOSES = CliWords(Words(customer_events.ConsentPurpose))
TICKET_CHANNELS = CliWords(Words(ticket_events.TicketChannel))
TICKET_PRIORITIES = CliWords(Words(ticket_events.TicketPriority))
TICKET_STATES = CliWords(Words(ticket_events.TicketState))
INTERACTION_KINDS = CliWords(Words(ticket_events.InteractionKind), {"internal_note": "note"})
WAITING_FOR = CliWords(Words(ticket_events.TicketWaitingFor))
SLA_TARGET_KINDS = CliWords(Words(ticket_events.SlaTargetKind))
SLA_TARGET_STATUSES = CliWords(Words(ticket_events.SlaTargetStatus))
CONTACT_DIRECTIONS = CliWords(Words(contact_events.ContactDirection))
CONTACT_OUTCOMES = CliWords(Words(contact_events.ContactOutcome))
ARTICLE_STATES = CliWords(Words(knowledge_events.ArticleState))
ARTICLE_LINK_KINDS = CliWords(Words(ticket_events.ArticleLinkKind), {"used_to_resolve": "resolved"})
WORK_ORDER_STATES = CliWords(Words(field_service_events.WorkOrderState))
ALLOWANCE_UNITS = CliWords(Words(service_contract_events.AllowanceUnit))
CONSUME_ON = CliWords(Words(service_contract_events.ConsumeOn))
