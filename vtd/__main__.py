"""Run the daemon with ``python -m vtd``."""

from __future__ import annotations

from vtd.cli import main

main()
