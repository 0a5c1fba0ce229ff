"""The knowledge-base and field-service reports' arithmetic: pure functions over the rows the
application reads (no I/O), so their maths is tested without servers."""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from c360_service_desk.money import money

HOUR = 3600.0
TOP_ARTICLES = 20


def _hours(start: datetime, end: datetime) -> float:
    return (end - start).total_seconds() / HOUR


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def _mean(values: Iterable[float]) -> float | None:
    found = list(values)
    return statistics.fmean(found) if found else None


@dataclass(frozen=True)
class Resolution:
    """A ticket resolved in the period: when it opened, when it was (last) resolved, and the
    articles (id, title) used to resolve it."""

    opened_at: datetime
    resolved_at: datetime
    articles: list[tuple[str, str]] = field(default_factory=list)


@dataclass(frozen=True)
class KnowledgeReport:
    rows: list[dict[str, Any]]
    """Two groups: with_article True and False; tickets, median_hours, mean_hours."""
    top_articles: list[dict[str, Any]]
    """article_id, title, tickets, median_hours; most used first."""


def knowledge_report(resolved: list[Resolution]) -> KnowledgeReport:
    """Resolution time of tickets resolved with a knowledge article beside those without,
    and the articles used most."""
    rows = []
    for with_article in (True, False):
        hours = [
            _hours(r.opened_at, r.resolved_at) for r in resolved if bool(r.articles) == with_article
        ]
        rows.append(
            {
                "with_article": with_article,
                "tickets": len(hours),
                "median_hours": _median(hours),
                "mean_hours": _mean(hours),
            }
        )
    per_article: dict[str, tuple[str, list[float]]] = {}
    for r in resolved:
        for article_id, title in r.articles:
            per_article.setdefault(article_id, (title, []))[1].append(
                _hours(r.opened_at, r.resolved_at)
            )
    top = sorted(per_article.items(), key=lambda item: (-len(item[1][1]), item[0]))
    return KnowledgeReport(
        rows,
        [
            {
                "article_id": article_id,
                "title": title,
                "tickets": len(hours),
                "median_hours": _median(hours),
            }
            for article_id, (title, hours) in top[:TOP_ARTICLES]
        ],
    )


@dataclass(frozen=True)
class Visit:
    """A completed visit, as the field-service report sees it."""

    technician_id: str
    region: str
    currency: str
    cost: Decimal
    created_at: datetime
    work_started_at: datetime | None
    completed_at: datetime
    first_time_fix: bool
    satisfaction: int
    """1-5; 0 if not rated."""


def field_service_report(visits: list[Visit]) -> list[dict[str, Any]]:
    """One row for all visits, one per technician and one per region, each per currency
    (costs in different currencies are not added up): visits, total cost, cost per visit,
    median hours to complete and on site, first-time fixes and their rate, satisfaction."""
    groups: dict[tuple[str, str, str], list[Visit]] = {}
    for v in visits:
        for dimension, value in (
            ("all", "-"),
            ("technician", v.technician_id),
            ("region", v.region),
        ):
            groups.setdefault((dimension, value, v.currency), []).append(v)
    order = {"all": 0, "technician": 1, "region": 2}
    rows = []
    for (dimension, value, currency), group in sorted(
        groups.items(), key=lambda item: (order[item[0][0]], item[0][1], item[0][2])
    ):
        total = sum((v.cost for v in group), Decimal(0))
        fixes = sum(1 for v in group if v.first_time_fix)
        rated = [v.satisfaction for v in group if v.satisfaction]
        rows.append(
            {
                "dimension": dimension,
                "value": value,
                "currency": currency,
                "visits": len(group),
                "total_cost": money(total, currency),
                "cost_per_visit": money(total / len(group), currency),
                "median_hours_to_complete": _median(
                    [_hours(v.created_at, v.completed_at) for v in group]
                ),
                "median_hours_on_site": _median(
                    [
                        _hours(v.work_started_at, v.completed_at)
                        for v in group
                        if v.work_started_at is not None
                    ]
                ),
                "first_time_fixes": fixes,
                "first_time_fix_rate": fixes / len(group),
                "ratings": len(rated),
                "mean_satisfaction": _mean(rated),
            }
        )
    return rows
