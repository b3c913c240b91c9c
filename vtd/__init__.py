"""vtd: a local store for the values chat extensions track.

The daemon serves JSON-RPC 2.0 over a Unix socket and keeps one SQLite file
per registered extension. Start it with ``vtd`` or ``python -m vtd``.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
