"""The sign-in callback finds users as JupyterHub does, without re-running loaded users' queries.

A real JupyterHub database (SQLite, JupyterHub's own schema and session settings); the
statements counted are the ones SQLAlchemy sends to it.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from jupyterhub import orm
from sqlalchemy import event

from hub_config.auth.authenticator import DatalakeOAuthenticator
from hub_config.auth.callback import DatalakeCallbackHandler, find_orm_user


@pytest.fixture
def db() -> Iterator[orm.Session]:
    session = orm.new_session_factory("sqlite:///:memory:")()
    physics = orm.Group(name="escape/physics")
    for i in range(50):
        user = orm.User(name=f"user{i}.name")
        user.groups.append(physics)
        session.add(user)
    session.commit()
    yield session
    session.close()


def _statements(db: orm.Session) -> list[str]:
    seen: list[str] = []
    event.listen(db.get_bind(), "before_cursor_execute", lambda *args: seen.append(args[2]))
    return seen


def test_a_loaded_user_is_the_same_object_after_one_query(db: orm.Session) -> None:
    expected = orm.User.find(db, "user7.name")
    seen = _statements(db)
    found = find_orm_user(db, "user7.name")
    assert found is expected
    assert len(seen) == 1  # JupyterHub's query: 4 (the user, then groups, shares, roles again)
    assert [g.name for g in found.groups] == ["escape/physics"]


def test_a_user_not_loaded_yet_is_loaded_with_its_relationships(db: orm.Session) -> None:
    db.expire_all()  # what a rollback does to the hub's session
    found = find_orm_user(db, "user3.name")
    assert found is not None and found.name == "user3.name"
    assert [g.name for g in found.groups] == ["escape/physics"]


def test_renamed_deleted_and_new_users_are_seen_as_the_database_has_them(db: orm.Session) -> None:
    renamed = orm.User.find(db, "user1.name")
    renamed.name = "user1.renamed"
    db.delete(orm.User.find(db, "user2.name"))
    db.add(orm.User(name="newcomer"))
    db.commit()
    assert find_orm_user(db, "user1.name") is None
    assert find_orm_user(db, "user1.renamed") is renamed
    assert find_orm_user(db, "user2.name") is None
    assert find_orm_user(db, "newcomer") is orm.User.find(db, "newcomer")
    assert find_orm_user(db, "nobody") is None


def test_pending_changes_are_flushed_before_the_lookup(db: orm.Session) -> None:
    db.add(orm.User(name="not.committed"))
    assert find_orm_user(db, "not.committed") is not None


def test_the_authenticator_serves_its_callback_with_this_handler() -> None:
    routes = dict(DatalakeOAuthenticator().get_handlers(None))
    assert routes["/oauth_callback"] is DatalakeCallbackHandler
