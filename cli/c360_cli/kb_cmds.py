"""`c360 kb ...`: the knowledge base (articles, their lifecycle and versions, search,
suggestions for a ticket, votes, the resolution-time report) through the service-desk API."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime, timedelta
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp
from rich.text import Text

from c360.service_desk.v1 import service_desk_service_pb2 as api
from c360.service_desk.v1.service_desk_service_pb2_grpc import ServiceDeskServiceStub
from c360_cli.argtypes import whole_in
from c360_cli.client import Client
from c360_cli.commands import Api, Arg, Command, Subparsers, add_commands
from c360_cli.output import PAGE_CAPTION, JSONValue, Output, iso_field, parse_time, short_time
from c360_cli.words import ARTICLE_LINK_KINDS, ARTICLE_STATES

ARTICLES = Api("service-desk", ServiceDeskServiceStub, "article", whole_in(0, 2**63 - 1))
ID = Arg("article_id", "article_id", "the article's id", metavar="ID")
CONTENT = (
    Arg("--title", "title", "the article's title", metavar="TEXT", default=""),
    Arg("--body", "body", "its text (Markdown)", metavar="TEXT", default=""),
    Arg("--category", "category", "a category such as billing or internet", default=""),
    Arg("--keyword", "keywords", "a search keyword (repeat the option)", repeated=True),
)

COMMANDS = (
    Command(
        "create",
        "write a new article (a draft)",
        ARTICLES,
        "CreateArticle",
        api.CreateArticleRequest,
        (
            *CONTENT,
            Arg(
                "--language",
                "language",
                "ISO 639-1 code (default en); search stems words in it",
                default="",
            ),
            Arg("--author", "author_id", "the author's employee id", metavar="EMPLOYEE_ID"),
        ),
        verb="article drafted",
    ),
    Command(
        "edit",
        "change the working version (of a published article: its next version)",
        ARTICLES,
        "ReviseArticle",
        api.ReviseArticleRequest,
        (ID, *CONTENT),
        verb="article revised",
        expected_version=True,
        description=(
            "Change the article's working version; options left out keep what it has. Editing"
            " a published article starts its next version as a draft: the published version"
            " keeps serving until the new one is published."
        ),
    ),
    Command(
        "submit",
        "send a draft for review",
        ARTICLES,
        "SubmitArticle",
        api.SubmitArticleRequest,
        (ID,),
        verb="article sent for review",
        expected_version=True,
    ),
    Command(
        "publish",
        "publish the reviewed version",
        ARTICLES,
        "PublishArticle",
        api.PublishArticleRequest,
        (ID, Arg("--reviewer", "reviewer_id", "the reviewer's employee id", default="")),
        verb="article published",
        expected_version=True,
    ),
    Command(
        "archive",
        "take an article out of service (final)",
        ARTICLES,
        "ArchiveArticle",
        api.ArchiveArticleRequest,
        (ID, Arg("--reason", "reason", "why", default="")),
        verb="article archived",
        expected_version=True,
    ),
    Command(
        "link",
        "link a published article to a ticket",
        ARTICLES,
        "LinkArticle",
        api.LinkArticleRequest,
        (
            ID,
            Arg("--ticket", "ticket_id", "the ticket's id", metavar="ID", required=True),
            Arg(
                "--as",
                "kind",
                ", ".join(ARTICLE_LINK_KINDS.words),
                default="suggested",
                words=ARTICLE_LINK_KINDS,
            ),
        ),
        verb="article linked",
    ),
    Command(
        "vote",
        "say whether an article helped",
        ARTICLES,
        "VoteArticle",
        api.VoteArticleRequest,
        (
            ID,
            Arg("--helpful", "helpful", "it helped (leave out: it did not)", flag=True),
            Arg("--ticket", "ticket_id", "the ticket it was used for", metavar="ID", default=""),
        ),
        verb="vote recorded",
    ),
)


def register(subparsers: Subparsers) -> None:
    """Add `kb` and its subcommands."""
    parser = subparsers.add_parser(
        "kb",
        help="the knowledge base: write, review, publish, search and suggest articles",
        description="Knowledge articles (the service-desk service's commands). An article"
        " moves draft -> in review -> published -> archived.",
    )
    sub = parser.add_subparsers(title="commands", dest="kb_command", metavar="COMMAND")
    sub.required = True
    add_commands(sub, COMMANDS, {})

    p = sub.add_parser("show", help="show an article", description="Show an article.")
    p.add_argument("article_id", metavar="ID", help="the article's id")
    p.set_defaults(func=_show)

    p = sub.add_parser("list", help="list articles, latest change first", description="List.")
    p.add_argument(
        "--state", type=ARTICLE_STATES.parse, help=f"only {', '.join(ARTICLE_STATES.words)} ones"
    )
    p.add_argument("--category", default="", help="only this category's")
    p.add_argument("--limit", type=whole_in(1, 200), default=50, metavar="N", help="page size")
    p.add_argument("--page-token", default="", metavar="TOKEN", help="next_page_token of a page")
    p.set_defaults(func=_list)

    p = sub.add_parser(
        "search",
        help="full-text search of the published articles",
        description="Search the published articles, best matches first. Words are stemmed in"
        ' each article\'s language; "quoted phrases", or, and -word work as in a web search.',
    )
    p.add_argument("text", metavar="TEXT", help="what to look for")
    p.add_argument("--language", default="", help="only articles in this language (en, de, ...)")
    p.add_argument("--limit", type=whole_in(1, 50), default=10, metavar="N", help="at most N")
    p.set_defaults(func=_search)

    p = sub.add_parser(
        "suggest",
        help="articles that match a ticket's subject and description",
        description="Published articles sharing words with the ticket, best first.",
    )
    p.add_argument("ticket_id", metavar="TICKET", help="the ticket's id")
    p.add_argument("--limit", type=whole_in(1, 20), default=5, metavar="N", help="at most N")
    p.set_defaults(func=_suggest)

    p = sub.add_parser(
        "report",
        help="resolution time with and without an article",
        description="Median and mean hours from opening to resolution of the tickets resolved"
        " in a period (default: the last 30 days), with a knowledge article and without, and"
        " the articles used most.",
    )
    p.add_argument("--from", dest="start", type=parse_time, metavar="TIME", help="from TIME")
    p.add_argument("--to", dest="end", type=parse_time, metavar="TIME", help="before TIME")
    p.set_defaults(func=_report)


def _stub(client: Client) -> Any:
    return client.stub("service-desk", ServiceDeskServiceStub)


def summary_json(a: api.ArticleSummary) -> dict[str, JSONValue]:
    return {
        "article_id": a.article_id,
        "version": a.version,
        "state": ARTICLE_STATES.word(a.state),
        "title": a.title,
        "category": a.category,
        "language": a.language,
        "published_version": a.published_version,
        "used_to_resolve": a.used_to_resolve,
        "helpful_votes": a.helpful_votes,
        "unhelpful_votes": a.unhelpful_votes,
        "updated_at": iso_field(a, "updated_at"),
    }


def _articles(out: Output, articles: list[api.ArticleSummary], caption: str | None) -> None:
    if out.json_mode:
        out.json({"articles": [summary_json(a) for a in articles]})
        return
    out.table(
        ["id", "state", "lang", "title", "category", "used", "votes +/-"],
        [
            [
                a.article_id,
                ARTICLE_STATES.word(a.state),
                a.language,
                a.title,
                a.category,
                a.used_to_resolve,
                f"{a.helpful_votes}/{a.unhelpful_votes}",
            ]
            for a in articles
        ],
        caption=caption if articles else "no article found",
        no_wrap={"id", "state", "lang", "used", "votes +/-"},
        drop=["category", "lang"],
    )


def _show(args: argparse.Namespace) -> int:
    with Client(args) as client:
        a = (
            _stub(client)
            .GetArticle(api.GetArticleRequest(article_id=args.article_id), timeout=args.timeout)
            .article
        )
    out = Output(args.json)
    content = a.published if a.HasField("published") else a.working
    if out.json_mode:
        out.json(
            {
                "article_id": a.article_id,
                "version": a.version,
                "state": ARTICLE_STATES.word(a.state),
                "language": a.language,
                "author_id": a.author_id,
                "working_version": a.working_version,
                "working": _content_json(a.working),
                "published_version": a.published_version,
                "published": _content_json(a.published) if a.HasField("published") else None,
                "used_to_resolve": a.used_to_resolve,
                "suggested": a.suggested,
                "helpful_votes": a.helpful_votes,
                "unhelpful_votes": a.unhelpful_votes,
                "updated_at": iso_field(a, "updated_at"),
            }
        )
        return 0
    rows: list[tuple[str, Any]] = [
        ("id", a.article_id),
        ("state", ARTICLE_STATES.word(a.state)),
        ("language", a.language),
        ("category", content.category),
        ("keywords", list(content.keywords)),
        ("published version", a.published_version or "never published"),
        ("working version", a.working_version),
        ("used to resolve", a.used_to_resolve),
        ("suggested", a.suggested),
        ("votes", f"{a.helpful_votes} helpful, {a.unhelpful_votes} not"),
        ("updated", short_time(iso_field(a, "updated_at"))),
        ("version", a.version),
        ("text", Text(content.body)),
    ]
    if a.HasField("published") and a.working_version != a.published_version:
        rows.append((f"draft v{a.working_version}", Text(a.working.body)))
    out.kv_panel(content.title, rows)
    return 0


def _content_json(c: api.ArticleContent) -> dict[str, JSONValue]:
    return {
        "title": c.title,
        "body": c.body,
        "category": c.category,
        "keywords": list(c.keywords),
    }


def _list(args: argparse.Namespace) -> int:
    request = api.ListArticlesRequest(
        state=ARTICLE_STATES.value_or_zero(args.state or ""),
        category=args.category,
        page_size=args.limit,
        page_token=args.page_token,
    )
    with Client(args) as client:
        reply = _stub(client).ListArticles(request, timeout=args.timeout)
    out = Output(args.json)
    if out.json_mode:
        out.json(
            {
                "articles": [summary_json(a) for a in reply.articles],
                "next_page_token": reply.next_page_token,
            }
        )
        return 0
    caption = f"{PAGE_CAPTION}{reply.next_page_token}" if reply.next_page_token else None
    _articles(out, list(reply.articles), caption)
    return 0


def _search(args: argparse.Namespace) -> int:
    request = api.SearchArticlesRequest(text=args.text, language=args.language, limit=args.limit)
    with Client(args) as client:
        reply = _stub(client).SearchArticles(request, timeout=args.timeout)
    _articles(Output(args.json), list(reply.articles), None)
    return 0


def _suggest(args: argparse.Namespace) -> int:
    request = api.SuggestArticlesRequest(ticket_id=args.ticket_id, limit=args.limit)
    with Client(args) as client:
        reply = _stub(client).SuggestArticles(request, timeout=args.timeout)
    _articles(Output(args.json), list(reply.articles), None)
    return 0


def period(start: Timestamp | None, end: Timestamp | None) -> tuple[Timestamp, Timestamp]:
    """A report's period: the given times, else the last 30 days up to now."""
    now = datetime.now(UTC)
    if end is None:
        end = Timestamp()
        end.FromDatetime(now + timedelta(seconds=1))
    if start is None:
        start = Timestamp()
        start.FromDatetime(now - timedelta(days=30))
    return start, end


def hours(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _report(args: argparse.Namespace) -> int:
    start, end = period(args.start, args.end)
    request = api.GetKnowledgeReportRequest(resolved_from=start, resolved_to=end)
    with Client(args) as client:
        reply = _stub(client).GetKnowledgeReport(request, timeout=args.timeout)
    rows = [
        {
            "with_article": r.with_article,
            "tickets": r.tickets,
            "median_hours": r.median_hours if r.HasField("median_hours") else None,
            "mean_hours": r.mean_hours if r.HasField("mean_hours") else None,
        }
        for r in reply.rows
    ]
    top = [
        {
            "article_id": a.article_id,
            "title": a.title,
            "tickets": a.tickets,
            "median_hours": a.median_hours if a.HasField("median_hours") else None,
        }
        for a in reply.top_articles
    ]
    out = Output(args.json)
    if out.json_mode:
        out.json({"rows": rows, "top_articles": top})
        return 0
    out.table(
        ["resolved", "tickets", "median hours", "mean hours"],
        [
            [
                "with an article" if r["with_article"] else "without",
                r["tickets"],
                hours(r["median_hours"]),
                hours(r["mean_hours"]),
            ]
            for r in rows
        ],
        title="time to resolution",
    )
    if top:
        out.table(
            ["id", "article", "tickets", "median hours"],
            [[a["article_id"], a["title"], a["tickets"], hours(a["median_hours"])] for a in top],
            title="articles used most",
            no_wrap={"id", "tickets", "median hours"},
        )
    return 0
