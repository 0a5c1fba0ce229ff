"""The `c360` commands by name, with the module that defines each and its one-line help.

`c360 --help` and a command's run import only what they need: the help of the whole tree
comes from here, and a command's module (with grpc, protobuf and rich behind it) is imported
when that command runs. A unit test checks that this agrees with what the modules register.
"""

from __future__ import annotations

COMMANDS: tuple[tuple[str, str, str], ...] = (
    ("up", "up", "run PostgreSQL, NATS and all services locally until Ctrl-C"),
    ("services", "up", "list the registered services (name, port, API)"),
    ("logs", "logs", "print (and follow) a service's log of the local stack"),
    ("customer", "customer_cmds", "register, show and change customers"),
    ("ticket", "ticket_cmds", "open, work and show service-desk tickets"),
    ("offers", "marketing_cmds", "one-to-one offers for a customer, with the reason"),
    (
        "calllist",
        "marketing_cmds",
        "telemarketing call lists: build, next call, record the outcome",
    ),
    (
        "leadlist",
        "marketing_cmds",
        "lead lists for sales: build from a campaign, distribute to agents",
    ),
    ("segment", "marketing_cmds", "live segments: define, preview, members, why"),
    ("campaign", "marketing_cmds", "plan, approve, launch and follow campaigns"),
    ("kb", "kb_cmds", "the knowledge base: write, review, publish, search and suggest articles"),
    ("visit", "visit_cmds", "field service: on-site visits, their cost and the report"),
    (
        "calendar",
        "calendar_cmds",
        "SLA business calendars: working hours and public holidays (iCalendar import)",
    ),
    ("contract", "contact_cmds", "service contracts: entitlements, expiry and renewal"),
    ("contact", "contact_cmds", "record contact-centre contacts that need no ticket"),
    ("timeline", "timeline_cmds", "a customer's timeline; rebuild the read model"),
    ("profile", "timeline_cmds", "a customer's 360 profile"),
    ("search", "timeline_cmds", "find customers by name prefix, e-mail or phone"),
    ("lead", "sales_cmds", "capture, assign, qualify, convert and show leads"),
    ("team", "sales_cmds", "sales teams and their lead routing"),
    ("opportunity", "sales_cmds", "open, move, win, lose and show opportunities"),
    ("product", "sales_cmds", "the product catalogue"),
    ("pricelist", "sales_cmds", "price lists: rules and the price list document"),
    ("quote", "sales_cmds", "draft, price, send and accept quotes"),
    ("order", "sales_cmds", "orders: confirm for ERP, follow, unrealise"),
    (
        "pipeline",
        "sales_cmds",
        "open opportunities by stage, owner, territory or team (now or --as-of)",
    ),
    ("activity", "sales_cmds", "agents' calls, meetings, e-mails and tasks"),
    ("sales", "sales_cmds", "sales reports"),
    ("forecast", "sales_cmds", "weighted forecast by period, category and owner (now or --as-of)"),
    ("demo", "demo", "load a realistic demo data set through the public APIs"),
    ("verify", "verify", "check that every stored event is in the timeline exactly once"),
    ("subscribe", "subscribe", "follow c360's events on a durable consumer, one JSON line each"),
    ("deadletter", "deadletter", "messages c360 could not take (malformed or unknown ERP events)"),
    ("call", "call", "call any method of a registered service with a JSON request"),
    ("token", "token_cmd", "issue bearer tokens for applications and people (operator)"),
    ("ops", "ops", "operate c360 on Kubernetes (status, rebuild, logs, rollout-restart)"),
    ("completion", "completion", "print a shell completion script (bash or zsh)"),
)
"""(command, module of c360_cli that registers it, help), in the order `--help` lists them.
A module's commands are next to each other."""

MODULES: tuple[str, ...] = tuple(dict.fromkeys(module for _, module, _ in COMMANDS))

GLOBAL_OPTIONS_WITH_VALUE = ("--home", "--addr", "--token", "--timeout")
"""The global options that take a value (as the next word unless written --opt=value)."""


def module_of(argv: list[str]) -> str | None:
    """The module of the command `argv` names (None: no command, or not one of ours)."""
    words = iter(argv)
    for word in words:
        if word == "--":
            return None
        if word in GLOBAL_OPTIONS_WITH_VALUE:
            next(words, None)
            continue
        if word.startswith("-"):
            continue
        for name, module, _ in COMMANDS:
            if name == word:
                return module
        return None
    return None
