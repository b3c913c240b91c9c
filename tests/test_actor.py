"""The writer actor's promise to its callers: told of success only after the commit."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import anyio
import pytest

from vtd import schema
from vtd.actor import NotApplied, PendingWrite, WriterActor

pytestmark = pytest.mark.anyio


def _insert(conn: sqlite3.Connection) -> int:
    conn.execute("INSERT INTO characters (id, created_at, updated_at) VALUES ('c', 'x', 'x')")
    return 1


async def test_a_write_finished_without_being_applied_is_a_failure() -> None:
    pending = PendingWrite(_insert)
    pending._finish()  # as the actor does for its batch, even if the worker never ran it
    with pytest.raises(NotApplied):
        pending.outcome()


async def test_a_done_callback_runs_after_the_commit_and_sees_the_row(tmp_path: Path) -> None:
    path = tmp_path / "actor.sqlite3"
    seen: list[int] = []
    async with anyio.create_task_group() as tg:
        actor = WriterActor("test", path, schema.migrate)
        tg.start_soon(actor.run)
        await actor.opened.wait()
        pending = actor.submit_nowait(_insert)

        def committed() -> None:
            # Another connection sees the row: the answer may go out now.
            with closing(sqlite3.connect(path)) as other:
                seen.append(other.execute("SELECT count(*) FROM characters").fetchone()[0])
            seen.append(pending.outcome())

        pending.add_done_callback(committed)
        with anyio.fail_after(10):
            await pending.settled()
        actor.close()
    assert seen == [1, 1]
