"""How this run prints for people, from the global options (main sets it once)."""

from __future__ import annotations

wide = False
"""--wide: whole ids and no column gives way (lines may then be wider than the terminal)."""
