"""The line naming what a command made: each id beside its name, however narrow the terminal."""

from __future__ import annotations

import io

from rich.console import Console

from c360.common.v1 import command_pb2
from c360_cli.output import Output


def test_a_results_ids_stay_on_the_line_of_their_names() -> None:
    out = Output(json_mode=False)
    stream = io.StringIO()
    out.console = Console(file=stream, width=100, color_system=None)
    ids = {
        "customer_id": "f7b9b23b-68d7-4871-93ad-d0a256064c7c",
        "opportunity_id": "5c383aa8-5592-461d-86f7-437c3028dadf",
        "contact_person_id": "31f6610a-01c2-4bb7-a303-a864f8aa63cc",
    }
    result = command_pb2.CommandResult(aggregate_id="85245071-54b5-4eb1-90c6-e91284f8ffd0")
    out.result("lead converted", result, "lead", **ids)
    lines = stream.getvalue().splitlines()
    for key, value in ids.items():
        name = key.replace("_", " ")
        assert any(f"{name} {value}" in line for line in lines), (name, lines)
