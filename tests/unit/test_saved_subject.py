"""The subject a hub user is bound to, read from JupyterHub's own database (a real SQLite ORM).

Every sign-in asks which IAM subject a name belongs to; a returning user must not cost a decrypt
of the auth state each time (the logins benchmark), yet a user deleted by an admin and signed up
again by someone else must be read afresh, not refused on a stale memory.
"""

from __future__ import annotations

import asyncio
import base64
import os
from collections.abc import Iterator
from typing import Any
from unittest import mock

import pytest
from jupyterhub import crypto, orm

from hub_config.auth import authenticator as authmod

KEY = "oauth_user"


@pytest.fixture
def db() -> Iterator[Any]:
    with mock.patch.dict(os.environ, {"JUPYTERHUB_CRYPT_KEY": base64.b64encode(os.urandom(32)).decode()}):
        crypto.CryptKeeper.clear_instance()
        session = orm.new_session_factory("sqlite:///:memory:")()
        yield session
        session.close()
        crypto.CryptKeeper.clear_instance()


def _save(db: Any, name: str, sub: str) -> None:
    user = orm.User(name=name)

    async def encrypted() -> bytes:
        return await crypto.encrypt({KEY: {"sub": sub}})

    user.encrypted_auth_state = asyncio.run(encrypted())
    db.add(user)
    db.commit()


def _read(db: Any, name: str, known: dict[str, Any]) -> tuple[str | None, int]:
    """(subject, decrypts it took)."""
    with mock.patch.object(authmod, "_decrypted", wraps=authmod._decrypted) as decrypting:
        sub = asyncio.run(authmod._saved_subject(db, name, KEY, known))
    return sub, decrypting.call_count


def test_a_returning_user_is_not_decrypted_again(db: Any) -> None:
    known: dict[str, Any] = {}
    _save(db, "alice", "sub-alice")
    assert _read(db, "alice", known) == ("sub-alice", 1)
    assert _read(db, "alice", known) == ("sub-alice", 0)
    assert _read(db, "nobody", known) == (None, 0)


def test_a_deleted_and_recreated_user_is_read_afresh(db: Any) -> None:
    known: dict[str, Any] = {}
    _save(db, "alice", "sub-alice")
    assert _read(db, "alice", known)[0] == "sub-alice"
    db.delete(db.query(orm.User).filter(orm.User.name == "alice").one())
    db.commit()
    assert _read(db, "alice", known) == (None, 0)
    _save(db, "alice", "sub-mallory")
    assert _read(db, "alice", known) == ("sub-mallory", 1)


def test_a_user_without_a_subject_is_none_and_not_remembered(db: Any) -> None:
    known: dict[str, Any] = {}
    db.add(orm.User(name="bob"))
    db.commit()
    assert _read(db, "bob", known) == (None, 0)
    assert "bob" not in known


def test_an_auth_state_saved_since_is_read_afresh(db: Any) -> None:
    """An admin rebinding the name (PATCH /users/{name} auth_state) or a later login writes a new
    auth state: the next sign-in must see the subject saved now, not the one remembered."""
    known: dict[str, Any] = {}
    _save(db, "carol", "sub-carol")
    assert _read(db, "carol", known) == ("sub-carol", 1)
    user = db.query(orm.User).filter(orm.User.name == "carol").one()

    async def encrypted() -> bytes:
        return await crypto.encrypt({KEY: {"sub": "sub-previous-owner"}})

    user.encrypted_auth_state = asyncio.run(encrypted())
    db.commit()
    assert _read(db, "carol", known) == ("sub-previous-owner", 1)
    assert _read(db, "carol", known) == ("sub-previous-owner", 0)


def test_states_decrypt_inline_or_in_the_pool_alike(db: Any) -> None:
    """Small states are decrypted on the loop, large ones in JupyterHub's pool: same answer."""
    _save(db, "dave", "sub-dave")

    async def big() -> bytes:
        return await crypto.encrypt({KEY: {"sub": "sub-erin", "padding": "x" * (2 * authmod._INLINE_DECRYPT_BYTES)}})

    erin = orm.User(name="erin")
    erin.encrypted_auth_state = asyncio.run(big())
    db.add(erin)
    db.commit()
    with mock.patch.object(authmod, "decrypt", wraps=crypto.decrypt) as pooled:
        assert asyncio.run(authmod._saved_subject(db, "dave", KEY, {})) == "sub-dave"
        assert pooled.call_count == 0
        assert asyncio.run(authmod._saved_subject(db, "erin", KEY, {})) == "sub-erin"
        assert pooled.call_count == 1


def test_a_state_under_a_retired_key_still_reads_and_a_foreign_one_is_none(db: Any) -> None:
    """Key rotation (JUPYTERHUB_CRYPT_KEY="new;old") reads states written under the old key, as
    JupyterHub does; a state no configured key opens is "no subject", not an error."""
    _save(db, "frank", "sub-frank")
    old = crypto.CryptKeeper.instance().keys[0]
    crypto.CryptKeeper.instance().keys = [os.urandom(32), old]
    assert asyncio.run(authmod._saved_subject(db, "frank", KEY, {})) == "sub-frank"
    crypto.CryptKeeper.instance().keys = [os.urandom(32)]
    assert asyncio.run(authmod._saved_subject(db, "frank", KEY, {})) is None
