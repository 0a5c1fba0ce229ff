"""The knowledge base: articles with a lifecycle, versions, links to tickets and votes. Pure
domain on `eventsourcing.domain`, no I/O.

An article is written as a draft, sent for review, published, and archived at the end of its
life (draft -> in review -> published -> archived; a draft or an article in review can be
archived too). Editing a published article starts its next version as a draft: the
published version keeps serving (search, suggestions, links) until the new one is published.
An edit to an article in review sends it back to draft. Archived is final.

Usage is counted from links: an agent links a published article to a ticket as used to
resolve it or as suggested to the customer. Helpfulness is counted from votes.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Any, ClassVar

from eventsourcing.domain import Aggregate, event

from c360_platform.errors import PreconditionFailed, require_state
from c360_platform.validation import Violations

MAX_TITLE = 200
MAX_BODY = 50_000
MAX_KEYWORDS = 20
MAX_REASON = 500

TEXT_SEARCH_CONFIGS = {
    "da": "danish",
    "de": "german",
    "en": "english",
    "es": "spanish",
    "fi": "finnish",
    "fr": "french",
    "hu": "hungarian",
    "it": "italian",
    "nl": "dutch",
    "no": "norwegian",
    "pt": "portuguese",
    "ro": "romanian",
    "ru": "russian",
    "sv": "swedish",
    "tr": "turkish",
}
"""PostgreSQL's built-in text-search configuration per article language (ISO 639-1): words
are stemmed and stop words dropped in that language. Other languages use "simple"."""


def text_search_config(language: str) -> str:
    return TEXT_SEARCH_CONFIGS.get(language, "simple")


class ArticleState(StrEnum):
    DRAFT = "draft"
    IN_REVIEW = "in_review"
    PUBLISHED = "published"
    ARCHIVED = "archived"


class LinkKind(StrEnum):
    """How an article served a ticket."""

    USED_TO_RESOLVE = "used_to_resolve"
    SUGGESTED = "suggested"


def _content(title: str, body: str, category: str, keywords: list[str]) -> dict[str, Any]:
    return {"title": title, "body": body, "category": category, "keywords": list(keywords)}


class Article(Aggregate):
    """A knowledge article: its working version, and the published version that serves."""

    if TYPE_CHECKING:
        Drafted: ClassVar[type[Aggregate.Event]]
        Revised: ClassVar[type[Aggregate.Event]]
        Submitted: ClassVar[type[Aggregate.Event]]
        Published: ClassVar[type[Aggregate.Event]]
        Archived: ClassVar[type[Aggregate.Event]]
        Linked: ClassVar[type[Aggregate.Event]]
        Voted: ClassVar[type[Aggregate.Event]]

    @event("Drafted")
    def __init__(
        self,
        title: str,
        body: str,
        category: str,
        language: str,
        keywords: list[str],
        author_id: str,
    ) -> None:
        self.language = language
        self.author_id = author_id
        self.state = ArticleState.DRAFT.value
        self.working_version = 1
        """The working version's number (the published one's is `published_version`)."""
        self.working = _content(title, body, category, keywords)
        self.published: dict[str, Any] | None = None
        self.published_version = 0
        self.used = 0
        self.suggested = 0
        self.helpful = 0
        self.not_helpful = 0

    @property
    def serving(self) -> bool:
        """Whether a published version serves (search, suggestions, links)."""
        return self.published is not None and self.state != ArticleState.ARCHIVED

    @property
    def title(self) -> str:
        """The title people know it by: the published one if there is one."""
        return str((self.published or self.working)["title"])

    def _require(self, action: str, *allowed: ArticleState) -> None:
        require_state("article", self.id, self.state, action, allowed)

    def revise(self, title: str, body: str, category: str, keywords: list[str]) -> None:
        """New text for the working version; on a published article, its next version (a
        draft). Empty fields keep what the working version has."""
        self._require("edit", ArticleState.DRAFT, ArticleState.IN_REVIEW, ArticleState.PUBLISHED)
        v = Violations()
        new = article_content(v, title, body, category, keywords, required=False)
        v.check()
        merged = {k: new[k] or self.working[k] for k in self.working}
        if merged == self.working:
            return
        version = (
            self.working_version + 1
            if self.state == ArticleState.PUBLISHED
            else self.working_version
        )
        self._revised(
            merged["title"], merged["body"], merged["category"], merged["keywords"], version
        )

    @event("Revised")
    def _revised(
        self, title: str, body: str, category: str, keywords: list[str], version: int
    ) -> None:
        self.working = _content(title, body, category, keywords)
        self.working_version = version
        self.state = ArticleState.DRAFT.value

    def submit(self) -> None:
        """Send the draft for review."""
        self._require("submit", ArticleState.DRAFT)
        self._submitted(self.working_version)

    @event("Submitted")
    def _submitted(self, version: int) -> None:
        self.state = ArticleState.IN_REVIEW.value

    def publish(self, reviewer_id: str) -> None:
        """Publish the reviewed version: from now on it serves."""
        v = Violations()
        reviewer = v.employee_id("reviewer_id", reviewer_id)
        v.check()
        self._require("publish", ArticleState.IN_REVIEW)
        self._published(
            self.working_version, self.working["title"], self.working["category"], reviewer
        )

    @event("Published")
    def _published(self, version: int, title: str, category: str, reviewer_id: str) -> None:
        self.published = dict(self.working)
        self.published_version = version
        self.state = ArticleState.PUBLISHED.value

    def archive(self, reason: str) -> None:
        v = Violations()
        why = v.text("reason", reason, required=False, max_len=MAX_REASON)
        v.check()
        self._require("archive", ArticleState.DRAFT, ArticleState.IN_REVIEW, ArticleState.PUBLISHED)
        self._archived(why)

    @event("Archived")
    def _archived(self, reason: str) -> None:
        self.state = ArticleState.ARCHIVED.value

    def linkable(self, kind: str) -> str:
        """The link kind, checked, if the article can be linked to a ticket now."""
        v = Violations()
        k = v.enum("kind", kind, LinkKind)
        v.check()
        assert k is not None
        if not self.serving:
            raise PreconditionFailed(
                f"article {self.id} is {self.state.replace('_', ' ')}"
                + ("" if self.published else " and was never published")
                + ": only a published article can be linked to a ticket"
            )
        return k.value

    def link(self, ticket_id: str, kind: str) -> None:
        """Count a use of the published version for a ticket."""
        self._linked(ticket_id, self.linkable(kind), self.published_version)

    @event("Linked")
    def _linked(self, ticket_id: str, kind: str, version: int) -> None:
        if kind == LinkKind.USED_TO_RESOLVE:
            self.used += 1
        else:
            self.suggested += 1

    def vote(self, helpful: bool, ticket_id: str = "") -> None:
        """Someone found the published version helpful, or not."""
        if not self.serving:
            raise PreconditionFailed(
                f"article {self.id} is {self.state.replace('_', ' ')}: only a published"
                " article can be voted on"
            )
        self._voted(helpful, ticket_id, self.published_version)

    @event("Voted")
    def _voted(self, helpful: bool, ticket_id: str, version: int) -> None:
        if helpful:
            self.helpful += 1
        else:
            self.not_helpful += 1


def article_content(
    v: Violations,
    title: str,
    body: str,
    category: str,
    keywords: list[str],
    *,
    required: bool = True,
) -> dict[str, Any]:
    """Validated content fields (empty ones stay empty when not `required`)."""
    if len(keywords) > MAX_KEYWORDS:
        v.add("keywords", f"at most {MAX_KEYWORDS}")
        keywords = []
    return {
        "title": v.text("title", title, required=required, max_len=MAX_TITLE),
        "body": v.paragraphs("body", body, required=required, max_len=MAX_BODY),
        "category": v.tag("category", category) if category.strip() else "",
        "keywords": [v.tag(f"keywords[{i}]", k) for i, k in enumerate(keywords)],
    }


def draft_article(
    *,
    title: str,
    body: str,
    category: str,
    language: str,
    keywords: list[str],
    author_id: str,
) -> Article:
    """Validate (every offending field at once) and start an article as a draft."""
    v = Violations()
    content = article_content(v, title, body, category, keywords)
    lang = language.strip().lower() or "en"
    if not (len(lang) == 2 and lang.isascii() and lang.isalpha()):
        v.add("language", "must be a two-letter ISO 639-1 code, e.g. en or de")
    author = v.employee_id("author_id", author_id)
    v.check()
    return Article(
        title=content["title"],
        body=content["body"],
        category=content["category"] or "general",
        language=lang,
        keywords=content["keywords"],
        author_id=author,
    )
