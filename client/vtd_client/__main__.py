"""Run ``vtctl`` as ``python -m vtd_client``."""

from __future__ import annotations

from vtd_client.cli import main

main()
