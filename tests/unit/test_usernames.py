"""Hub names are injective over IAM identities, whatever names IAM hands out (see `hub_config.auth.usernames`).

Two layers are tested: the pure mapping (verbatim and derived names are disjoint sets, so a claim can
never be someone else's derived name) and the authenticator's sign-in choice against the hub's
database (a name saved with one subject is never handed to another), driven by adversarial names.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tornado import web

from hub_config.auth import authenticator as authmod
from hub_config.auth.authenticator import DatalakeOAuthenticator
from hub_config.auth.usernames import MAX_LENGTH, is_derived, normalise_username, username_candidates

ISS = "https://iam.example.org/"
OTHER_ISS = "https://iam.other.example/"
# A DNS-1123-compatible core plus `.`/`_` as JupyterHub and KubeSpawner's escaping accept them.
SAFE = re.compile(r"^[a-z0-9]([a-z0-9._-]*[a-z0-9])?$")
HEX = "0123456789abcdef"
BUDGET = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

_safe_core = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=12)
_confusables = st.sampled_from(
    [
        "alice",
        "Alice",
        "ALICE",
        "аlice",  # Cyrillic а
        "ａｌｉｃｅ",  # fullwidth
        "alice\u200b",  # zero-width space
        "al\u0131ce",  # dotless i
        "alİce",
        "ﬁle",  # ligature
        "dave.smith",
        "Dave.Smith",
        "dave..smith",
        "dave_smith",
        "dave-smith",
        "jürgen",
        "jurgen",
        "user",
        "",
        "...",
        "---",
    ]
)
_derived_shaped = st.builds(
    lambda stem, sep, digest: f"{stem}{sep}{digest}",
    _safe_core,
    st.sampled_from(["-", "--", ".", "_", "-x-"]),
    st.text(alphabet=HEX, min_size=7, max_size=17),
)
_edged = st.builds(
    lambda a, core, b: f"{a}{core}{b}",
    st.sampled_from(["", ".", "-", "_", "..", "-.", "._"]),
    _safe_core,
    st.sampled_from(["", ".", "-", "_", "..", ".-", "_-"]),
)
_long = st.builds(lambda core, n: (core * 40)[:n], _safe_core, st.integers(min_value=30, max_value=300))
RAW = st.one_of(st.text(max_size=60), _confusables, _derived_shaped, _edged, _long)
SUB = st.one_of(st.uuids().map(str), st.text(min_size=1, max_size=20))
IDENTITY = st.tuples(st.sampled_from([ISS, OTHER_ISS]), SUB, RAW)


def _valid(name: str) -> bool:
    return bool(SAFE.match(name)) and len(name) <= MAX_LENGTH and ".." not in name


@BUDGET
@given(IDENTITY)
def test_every_name_is_valid_and_stable(identity: tuple[str, str, str]) -> None:
    """Primary and fallback names are valid hub/Kubernetes names, stable, and of distinct shapes."""
    iss, sub, raw = identity
    primary, fallback = username_candidates(raw, issuer=iss, sub=sub)
    assert _valid(primary), primary
    assert _valid(fallback), fallback
    assert primary != fallback
    assert is_derived(fallback)
    assert username_candidates(raw, issuer=iss, sub=sub) == (primary, fallback)
    assert normalise_username(raw, issuer=iss, sub=sub) == primary
    assert primary == raw or is_derived(primary), "a name is either the claim itself or derived"


@BUDGET
@given(IDENTITY, IDENTITY)
def test_distinct_identities_get_distinct_names(a: tuple[str, str, str], b: tuple[str, str, str]) -> None:
    """Two identities share a primary name only when IAM gave both the same verbatim claim (the
    database check's case); verbatim, derived and fallback names of different identities never meet."""
    if a[:2] == b[:2]:
        return
    pa, fa = username_candidates(a[2], issuer=a[0], sub=a[1])
    pb, fb = username_candidates(b[2], issuer=b[0], sub=b[1])
    assert fa != fb and fa != pb and fb != pa
    if pa == pb:
        assert a[2] == b[2] == pa, "only one verbatim claim held by two identities can meet"


@BUDGET
@given(IDENTITY, SUB, st.booleans())
def test_a_derived_name_cannot_be_squatted(victim: tuple[str, str, str], squatter_sub: str, fallback: bool) -> None:
    """Whoever holds another identity's derived (or fallback) name as their claim gets a name of their own."""
    iss, sub, raw = victim
    if squatter_sub == sub:
        return
    names = username_candidates(raw, issuer=iss, sub=sub)
    target = names[1] if fallback else names[0]
    if not is_derived(target):
        return
    assert set(username_candidates(target, issuer=iss, sub=squatter_sub)).isdisjoint(names)


def _auth() -> DatalakeOAuthenticator:
    return DatalakeOAuthenticator(username_claim="preferred_username", datalake_issuer=ISS)


def _sign_in(auth: DatalakeOAuthenticator, db: dict[str, str], sub: str, raw: str, *, save: bool = True) -> str | None:
    """One sign-in against a database of name → saved subject; the chosen name is saved as JupyterHub would."""

    async def saved(_db: Any, name: str, _key: str, _known: Any) -> str | None:
        return db.get(name)

    model = {"name": "ignored", "auth_state": {"oauth_user": {"sub": sub, "preferred_username": raw}}}
    with mock.patch.object(authmod, "_saved_subject", saved):
        try:
            name = asyncio.run(auth._claim_name(None, model))
        except web.HTTPError as err:
            assert err.status_code == 403
            return None
    if save:
        db[name] = sub
    return name


@BUDGET
@given(st.lists(st.tuples(st.sampled_from(["s1", "s2", "s3", "s4"]), RAW.filter(bool)), min_size=1, max_size=12))
def test_sign_ins_never_give_one_name_to_two_subjects(logins: list[tuple[str, str]]) -> None:
    """Any sequence of sign-ins (claims changing, reused, squatting) leaves every name with one subject,
    and an identity signing in again with the same claim keeps its name (an empty claim never gets
    this far: OAuthenticator refuses it)."""
    auth = _auth()
    db: dict[str, str] = {}
    first: dict[tuple[str, str], str | None] = {}
    for sub, raw in logins:
        name = _sign_in(auth, db, sub, raw)
        if name is not None:
            assert _valid(name)
            assert db[name] == sub
        first.setdefault((sub, raw), name)
        if first[(sub, raw)] is not None and name is not None:
            assert name == first[(sub, raw)], "same identity and claim, same name"


def test_old_squat_now_gets_its_own_name() -> None:
    """The reported attack: a claim equal to another identity's derived name no longer takes it."""
    victim = normalise_username("Alice", issuer=ISS, sub="sub-alice")
    assert is_derived(victim)
    squatter = normalise_username(victim, issuer=ISS, sub="sub-squatter")
    assert squatter != victim
    assert squatter.startswith(f"{victim}-")


@pytest.mark.parametrize(
    ("raw", "kept"),
    [
        ("alice", True),
        ("dave.smith", True),
        ("alice-1a2b3c4", True),  # 7 hex digits: not the derived shape
        ("alice-1a2b3c4d", False),
        ("alice-1a2b3c4d5e6f7a8b", False),
        ("build-20261202", False),  # 8 digits are hex digits too
        ("alice-1a2b3c4g", True),
    ],
)
def test_only_names_without_the_derived_ending_are_verbatim(raw: str, kept: bool) -> None:
    """Verbatim names never end in `-` and 8+ hex digits; such claims are derived like any changed name."""
    name = normalise_username(raw, issuer=ISS, sub="sub-1")
    assert (name == raw) is kept
    assert is_derived(name) is not kept


def test_recycled_username_gets_the_fallback_and_keeps_it() -> None:
    """IAM giving a deleted account's name to a new subject: the newcomer gets the fallback, for good."""
    auth = _auth()
    db = {"carol": "old-subject"}
    name = _sign_in(auth, db, "new-subject", "carol")
    assert name == username_candidates("carol", issuer=ISS, sub="new-subject")[1]
    del db["carol"]  # the old hub user deleted: the newcomer still keeps the name it has
    assert _sign_in(auth, db, "new-subject", "carol") == name
    assert _sign_in(auth, {"carol": "x", name: "y"}, "new-subject", "carol") is None


def test_no_subject_is_refused() -> None:
    """Without a subject identities cannot be told apart: no name is handed out."""
    auth = _auth()
    assert _sign_in(auth, {}, "", "alice") is None


def test_two_subjects_signing_in_at_once_get_two_names() -> None:
    """The second identity arrives before JupyterHub has saved the first one's subject: still its own name."""
    auth = _auth()
    db: dict[str, str] = {}
    first = _sign_in(auth, db, "sub-a", "erin", save=False)
    second = _sign_in(auth, db, "sub-b", "erin", save=False)
    assert first == "erin"
    assert second == username_candidates("erin", issuer=ISS, sub="sub-b")[1]
    assert _sign_in(auth, db, "sub-a", "erin", save=False) == "erin", "the first one keeps its name"
