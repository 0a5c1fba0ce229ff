"""The bench's report tables as a reader sees them in its log (160 columns)."""

from __future__ import annotations

from rich.console import Console

from bench.report import cpu_table

PROCESSES = [
    *("postgres", "nats", "bench", "echo", "customer", "timeline", "service-desk", "sales"),
    *("marketing", "customer-relay", "service-desk-relay", "sales-relay", "marketing-relay"),
]


def test_the_cpu_table_names_every_busy_process_in_full_and_the_idle_ones_below() -> None:
    busy = {"postgres", "nats", "bench", "customer", "timeline", "marketing", "customer-relay"}
    cpu = {
        phase: {name: (30.0 if name in busy else 0.4) for name in PROCESSES}
        for phase in ("RegisterCustomer, paced at half of peak", "ImportCustomers (again)")
    }
    waits = {"ImportCustomers (again)": {"idle in tx": 0.76, "ClientRead": 0.45, "on CPU": 0.45}}
    console = Console(width=160, record=True)
    console.print(cpu_table(cpu, waits))
    text = console.export_text()
    assert "…" not in text
    header = text.splitlines()[:6]
    for name in busy:
        assert all(part in "".join(header) for part in name.split("-")), name
    idle = [n for n in PROCESSES if n not in busy]
    assert f"under 1 % of a core in every phase: {', '.join(idle)}" in text
    assert "idle in tx 0.76, ClientRead 0.45, on CPU 0.45" in text
    assert max(len(line) for line in text.splitlines()) <= 160
