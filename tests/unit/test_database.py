"""The hub's SQLite database runs in WAL mode (or back in rollback-journal mode) as configured.

Real JupyterHub engines on real SQLite files: what an operator would see with `sqlite3` on the
hub PVC, and that the hub's own data survives the switch both ways.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from jupyterhub import orm
from sqlalchemy import event
from sqlalchemy.engine import Engine

from hub_config import database


@pytest.fixture(autouse=True)
def _no_listener_left() -> Iterator[None]:
    yield
    for listener in (database._wal, database._rollback):
        if event.contains(Engine, "connect", listener):
            event.remove(Engine, "connect", listener)


def _hub_session(path: Path) -> orm.Session:
    return orm.new_session_factory(f"sqlite:///{path}")()


def _hub_with_user(path: Path, name: str) -> orm.Session:
    """A WAL hub database at ``path`` with user ``name`` committed; its session, still open."""
    database.apply_database(write_ahead_log=True)
    session = _hub_session(path)
    session.add(orm.User(name=name))
    session.commit()
    return session


def _mode(path: Path) -> str:
    conn = sqlite3.connect(path)
    try:
        return str(conn.execute("PRAGMA journal_mode").fetchone()[0])
    finally:
        conn.close()  # an open reader would keep a WAL database from switching back


def test_hub_database_is_in_wal_mode_and_keeps_what_it_commits(tmp_path: Path) -> None:
    db_file = tmp_path / "jupyterhub.sqlite"
    session = _hub_with_user(db_file, "alice.smith")
    assert _mode(db_file) == "wal"
    assert (tmp_path / "jupyterhub.sqlite-wal").exists()
    # another reader on the host (an operator's sqlite3, a backup) sees the committed row
    conn = sqlite3.connect(db_file)
    assert conn.execute("SELECT name FROM users").fetchall() == [("alice.smith",)]
    conn.close()
    session.close()


def test_turning_it_off_converts_the_database_back_and_keeps_its_rows(tmp_path: Path) -> None:
    db_file = tmp_path / "jupyterhub.sqlite"
    first = _hub_with_user(db_file, "bob")
    first.close()
    first.get_bind().dispose()
    assert _mode(db_file) == "wal"

    database.apply_database(write_ahead_log=False)
    second = _hub_session(db_file)
    assert [u.name for u in second.query(orm.User)] == ["bob"]
    second.close()
    second.get_bind().dispose()
    assert _mode(db_file) == "delete"
    assert not (tmp_path / "jupyterhub.sqlite-wal").exists()


def test_applying_twice_leaves_one_listener() -> None:
    database.apply_database(write_ahead_log=True)
    database.apply_database(write_ahead_log=False)
    database.apply_database(write_ahead_log=False)
    assert event.contains(Engine, "connect", database._rollback)
    assert not event.contains(Engine, "connect", database._wal)


def test_a_locked_database_keeps_its_mode_and_the_hub_starts(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    db_file = tmp_path / "jupyterhub.sqlite"
    holder = sqlite3.connect(db_file, isolation_level=None)
    holder.execute("CREATE TABLE t (x)")
    holder.execute("BEGIN EXCLUSIVE")
    try:
        conn = sqlite3.connect(db_file, timeout=0.05)
        assert database.sqlite_journal(conn, write_ahead_log=True) is None
        conn.close()
    finally:
        holder.execute("COMMIT")
        holder.close()
    assert _mode(db_file) == "delete"
    assert "not switched to wal" in caplog.text


def test_other_databases_are_left_alone() -> None:
    class NotSqlite:
        def execute(self, _sql: str) -> None:
            raise AssertionError("must not be called")

    assert database.sqlite_journal(NotSqlite(), write_ahead_log=True) is None
