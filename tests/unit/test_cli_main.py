"""The CLI's entry: a catalogue that agrees with the command modules, `--help` without the
heavy imports, JSON errors, `--version`, completion and `c360 logs`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pytest

from c360_cli import catalogue, logs
from c360_cli.main import build_parser, main, version_text
from c360_platform import auth, registry

from .support import loaded_after


def _commands(parser: argparse.ArgumentParser) -> list[tuple[str, str | None]]:
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    helps = {a.dest: a.help for a in sub._choices_actions}
    return [(name, helps.get(name)) for name in sub.choices]


def test_the_catalogue_lists_what_the_modules_register() -> None:
    registered = _commands(build_parser())
    assert registered == [(name, help_text) for name, _, help_text in catalogue.COMMANDS]


@pytest.mark.parametrize(("name", "module"), [(n, m) for n, m, _ in catalogue.COMMANDS])
def test_each_command_is_registered_by_the_module_the_catalogue_names(
    name: str, module: str
) -> None:
    parser = build_parser([name])
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    # The named module's commands are real parsers (with their options); others are stubs.
    assert sub.choices[name].add_help
    others = [n for n, m, _ in catalogue.COMMANDS if m != module]
    assert all(not sub.choices[o].add_help for o in others)


@pytest.mark.parametrize(
    ("argv", "module"),
    [
        (["--help"], None),
        (["ticket", "list"], "ticket_cmds"),
        (["--home", "ticket", "customer", "get"], "customer_cmds"),
        (["--timeout=3", "--json", "profile", "show", "x"], "timeline_cmds"),
        (["--addr", "customer=:1", "search", "x"], "timeline_cmds"),
        (["nosuchcommand"], None),
        (["--", "ticket"], None),
    ],
)
def test_the_command_is_found_after_global_options(argv: list[str], module: str | None) -> None:
    assert catalogue.module_of(argv) == module


def test_help_imports_neither_grpc_nor_protobuf_nor_rich() -> None:
    code = (
        "import contextlib, io\n"
        "from c360_cli.main import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    try:\n"
        "        main(['--help'])\n"
        "    except SystemExit:\n"
        "        pass"
    )
    assert loaded_after(code, ["grpc", "google.protobuf", "rich", "psycopg", "nats"]) == []


def test_usage_errors_under_json_are_json_on_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--json", "logs", "--lines", "many"])
    assert exited.value.code == 2
    error = json.loads(capsys.readouterr().err)["error"]
    assert error["code"] == "USAGE"
    assert "--lines" in error["message"]


def test_a_mistyped_option_is_told_by_its_command_with_the_nearest_one(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # It was c360's: "usage: c360 [-h] ..." and "c360: error: unrecognized arguments: --sate
    # open", with neither the command's usage nor the option meant.
    with pytest.raises(SystemExit) as exited:
        main(["ticket", "list", "--sate", "open"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: c360 ticket list ")
    assert err.splitlines()[-1] == (
        "c360 ticket list: error: unrecognized arguments: --sate open"
        " (--sate: did you mean --state?)"
    )


@pytest.mark.parametrize(
    ("argv", "meant"),
    [
        (["tiket", "list"], "argument COMMAND: invalid choice: 'tiket', maybe you meant 'ticket'?"),
        (["ticket", "lst"], "argument COMMAND: invalid choice: 'lst', maybe you meant 'list'?"),
        (
            ["ticket", "open", "--customer", "x", "--subject", "x", "--channel", "phon"],
            "argument --channel: must be one of phone, ivr, email, sms, web-form, chat, fax,"
            " in-person (did you mean phone?)",
        ),
        (
            ["campaign", "cost", "1234", "--kind", "agent-hour", "--amount", "1"],
            "argument --kind: must be one of fixed, agent-hours, other (did you mean agent-hours?)",
        ),
    ],
)
def test_a_mistyped_command_or_word_names_the_nearest_one(
    argv: list[str], meant: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        main(argv)
    assert meant in capsys.readouterr().err


def test_every_commands_help_says_what_it_does() -> None:
    # 14 commands' --help was their usage and options only (`c360 pipeline define --help`
    # did not say that it replaces the stages of a pipeline of that name).
    def undescribed(parser: argparse.ArgumentParser, path: str) -> list[str]:
        found = []
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, child in action.choices.items():
                    found += [f"{path} {name}"] * (not child.description)
                    found += undescribed(child, f"{path} {name}")
        return found

    assert undescribed(build_parser(), "c360") == []
    pipeline = build_parser(["pipeline", "define"])
    sub = next(a for a in pipeline._actions if isinstance(a, argparse._SubParsersAction))
    nested = next(
        a for a in sub.choices["pipeline"]._actions if isinstance(a, argparse._SubParsersAction)
    )
    assert nested.choices["define"].description == "Set up a pipeline or replace its stages."


def test_cli_errors_under_json_name_code_and_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "customer.log").write_text("one\n")
    assert main(["--json", "--home", str(tmp_path), "logs", "sales"]) == 1
    error = json.loads(capsys.readouterr().err)["error"]
    assert error == {
        "code": "NOT_FOUND",
        "message": f"no log named 'sales' in {tmp_path / 'logs'}; there are: customer",
        "field": "service",
    }


def test_version_names_the_contract_packages() -> None:
    text = version_text()
    assert text.startswith("c360 ")
    assert "c360.customer.v1" in text
    assert "c360.timeline.v1" in text


@pytest.mark.parametrize("shell", ["bash", "zsh"])
def test_completion_scripts_know_subcommands_and_options(
    shell: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["completion", shell]) == 0
    script = capsys.readouterr().out
    assert "c360" in script
    assert "duplicates" in script  # a subcommand of customer
    assert "--min-score" in script  # an option of that subcommand


def test_logs_tail_reads_the_last_lines_of_a_large_file(tmp_path: Path) -> None:
    path = tmp_path / "big.log"
    path.write_text("".join(f"line {i}\n" for i in range(50_000)))
    assert logs.tail(path, 3) == ["line 49997", "line 49998", "line 49999"]
    assert logs.tail(path, 0) == []
    short = tmp_path / "short.log"
    short.write_text("a\nb")  # no newline at the end
    assert logs.tail(short, 10) == ["a", "b"]


def test_logs_without_a_service_lists_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "logs").mkdir()
    for name in ("customer", "timeline"):
        (tmp_path / "logs" / f"{name}.log").write_text("x\n")
    assert main(["--home", str(tmp_path), "logs"]) == 0
    listed = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    assert listed == ["customer", "timeline"]


def test_services_lists_each_service_with_its_port_and_grpc_api(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "100")
    home = ["--home", str(tmp_path)]
    assert main([*home, "services"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert max(len(line.rstrip()) for line in lines) <= 100
    assert lines[0].strip().endswith("registered services, default ports")
    assert lines[1].split() == ["service", "port", "gRPC", "API", "what", "it", "does"]
    rows = {line.split()[0]: line.split()[1:3] for line in lines[3:] if line[:1].strip()}
    assert rows == {s.name: [str(s.default_port), s.api] for s in registry.services().values()}
    assert main([*home, "--json", "services"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(s["name"], s["api"]) for s in listed] == [(n, a) for n, [_, a] in rows.items()]
    assert {s["address"] for s in listed} == {None}


def test_services_shows_the_ports_of_the_running_stack(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`c360 up --base-port 52051` moves every port: `c360 services` shows where they are."""
    moved = {name: f"127.0.0.1:{s.port(52051)}" for name, s in registry.services().items()}
    (tmp_path / "endpoints.json").write_text(json.dumps({"services": moved}))
    assert main(["--home", str(tmp_path), "services"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].strip().endswith("registered services, ports of the running stack")
    rows = {line.split()[0]: line.split()[1] for line in lines[3:] if line[:1].strip()}
    assert rows == {name: address.rpartition(":")[2] for name, address in moved.items()}
    assert main(["--home", str(tmp_path), "--json", "services"]) == 0
    assert {s["name"]: s["address"] for s in json.loads(capsys.readouterr().out)} == moved


@pytest.mark.parametrize("days", ["-5", "0", "nan", "abc"])
def test_a_token_that_would_never_be_valid_is_refused(
    days: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    auth.home_signing_key(tmp_path)
    with pytest.raises(SystemExit) as exited:
        main(
            [
                "--home",
                str(tmp_path),
                "token",
                "create",
                "--role",
                "agent",
                "--name",
                "x",
                "--days",
                days,
            ]
        )
    assert exited.value.code == 2
    assert "argument --days" in capsys.readouterr().err


def test_a_token_without_a_name_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    auth.home_signing_key(tmp_path)
    argv = ["--home", str(tmp_path), "token", "create", "--role", "agent", "--name", " "]
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "--name: is required" in captured.err


def test_a_refusal_of_a_hand_written_command_names_the_options_typed(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`ticket sla-report --from … --to …` fills opened_from and opened_to: the service's
    refusal names those fields, the user reads the options; --json keeps the service's text."""
    from c360_cli import ticket_cmds
    from c360_cli.errors import CliError

    def refused(args: Any) -> int:
        raise CliError("opened_to: must be after opened_from")

    monkeypatch.setattr(ticket_cmds, "_sla_report", refused)
    argv = ["ticket", "sla-report", "--from", "2027-01-01", "--to", "2026-01-01"]
    assert main(argv) == 1
    assert capsys.readouterr().err.strip() == "--to: must be after --from"
    assert main(["--json", *argv]) == 1
    error = json.loads(capsys.readouterr().err)["error"]
    assert error["message"] == "opened_to: must be after opened_from"


def test_customer_import_refuses_a_file_of_no_format_it_reads_before_reading_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """README.md read as JSON Lines gave a refusal for each of its lines; a directory was "no
    such file". Both are refused at once, before any service is asked."""
    notes = tmp_path / "notes.md"
    notes.write_text("# Customers\n\nnot a table\n")
    for target, says in [
        (notes, "not a .csv or .jsonl file; name its format with --format csv or jsonl"),
        (tmp_path, "a directory, not a .csv or .jsonl file"),
        (tmp_path / "gone.csv", "no such file"),
    ]:
        assert main(["--home", str(tmp_path), "customer", "import", str(target)]) == 2
        assert capsys.readouterr().err.strip() == f"{target}: {says}"
