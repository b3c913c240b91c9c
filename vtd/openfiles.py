"""The daemon's open files: its limit, and what to say when they run out.

Every connection is an open file, and every registered extension keeps a
few (its database, WAL and shared-memory files, for the writer and the
reader). ``raise_limit`` lifts the soft limit at start; ``refuse_if_short``
keeps a new extension from taking the last files, which the daemon needs to
accept connections at all; ``describe`` is the reason a client is given.
"""

from __future__ import annotations

import errno
import logging
import os
import resource

from vtd.errors import StorageUnavailable

log = logging.getLogger(__name__)

SPARE = 64
"""Files kept free for connections: a new extension may not take these."""
FOR_A_DATABASE = 8
"""Fewer free files than this, and SQLite may fail to open a database with its WAL."""

_OUT_OF_FILES = (
    "vtd is short of open files ({files}; it keeps {spare} free for connections, and each "
    "registered extension keeps a few open): raise the limit (LimitNOFILE= in vtd.service, "
    "or ulimit -n before starting vtd) or deregister extensions no longer used, then retry"
)


def raise_limit() -> int:
    """Lift the soft limit on open files to the hard limit; answer the limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if soft == resource.RLIM_INFINITY or soft >= target:
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError) as exc:
        log.warning("cannot raise the open-file limit from %d: %s", soft, exc)
        return soft
    return target


def _in_use(soft: int) -> int | None:
    """Files open now; ``None`` where there is no /proc to count them with."""
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError as exc:
        return soft if exc.errno in (errno.EMFILE, errno.ENFILE) else None  # listing needs one


def short(spare: int) -> bool:
    """Whether fewer than ``spare`` more files may be opened (``False`` where it cannot tell)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return False
    in_use = _in_use(soft)
    return in_use is not None and in_use > soft - spare


def describe() -> str:
    """The reason to give a client when files run short."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    in_use = _in_use(soft)
    files = f"the limit is {soft}" if in_use is None else f"{in_use} of {soft} allowed in use"
    return _OUT_OF_FILES.format(files=files, spare=SPARE)


def refuse_if_short(extension_id: str) -> None:
    """Raise ``StorageUnavailable`` if opening another extension would leave too few files."""
    if short(SPARE):
        raise StorageUnavailable(extension_id, describe())
