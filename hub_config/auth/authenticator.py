"""GenericOAuthenticator adapted to ESCAPE IAM and to what users should see when things go wrong.

OAuthenticator 17.4 gives us the OAuth dance; we add what production needs:

- usernames normalised safely, with a subject digest when lossy (see `usernames`), and never a
  name the hub's database keeps for another IAM subject (the fallback name instead, or a 403);
- groups read from the configured claim and mapped to one form (see `groups`);
- a 403 page that says which IAM groups give access, instead of a bare "Forbidden";
- a 503 page when the IdP cannot be reached at login, instead of a 500 and a traceback;
- proactive refresh: OAuthenticator only refreshes after the access token is *rejected*, but Rucio
  tokens are exchanged from it, so we refresh when less than a margin is left; an IdP outage during
  refresh keeps the session, a rejected refresh token sends the user to log in again.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import time
from typing import Any
from urllib.parse import urlencode, urlparse, urlunparse

from jupyterhub import orm
from jupyterhub.crypto import CryptKeeper, decrypt
from oauthenticator.generic import GenericOAuthenticator
from sqlalchemy import bindparam, select
from tornado import web
from tornado.httpclient import HTTPClientError
from traitlets import Any as AnyTrait
from traitlets import Integer, List, Unicode

from ..jwt import jwt_claims
from ..metrics import METRICS, timer
from ..redact import redact
from ..settings.iam import GroupsClaim
from ..tls import request_tls_options
from .callback import DatalakeCallbackHandler
from .groups import groups_from_claims
from .usernames import normalise_username, username_candidates

__all__ = ["DatalakeOAuthenticator", "SignInFailed", "SignInUnavailable"]

_CLAIM_SECONDS = 60.0
_KNOWN_SUBJECTS = 20_000
"""Subjects kept in memory by user (a name and a subject, ~200 bytes each: 4 MB at the bound)."""


class SignInUnavailable(web.HTTPError):
    """Sign-in (or a refresh) could not reach the identity provider; shown to users as a 503 page.

    Not :class:`hub_config.rucio.IdPUnavailable`, the token-exchange error of the Rucio side: this
    one is what a user sees in the browser, that one a reason logged and shown as a spawn event.
    """

    def __init__(self, service: str) -> None:
        super().__init__(503)
        self.jupyterhub_message = (
            f"{service} (the identity provider) is unavailable right now. "
            "Nothing is wrong with your account: please try again in a few minutes."
        )


class SignInFailed(web.HTTPError):
    """The identity provider answered sign-in (or a refresh) with an error or a reply without tokens.

    OAuthenticator raises an ``HTTPError`` whose message *is* the IdP's reply ("Bad response:
    {...}", or its ``error_description``), and JupyterHub prints that message on the error page:
    a reply echoing a token put it in front of the user. This page says what happened, never what
    the IdP sent; the log line has the OAuth error code, redacted.
    """

    def __init__(self, service: str) -> None:
        super().__init__(502)
        self.jupyterhub_message = (
            f"{service} (the identity provider) did not complete your sign-in. "
            "Please sign in again; if this keeps happening, contact the hub admins."
        )


_TOKEN_FIELDS = frozenset({"access_token", "refresh_token", "id_token"})
"""Token reply fields the auth state already keeps at its top level."""

_ERROR_CODE = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")


def idp_reply_summary(body: bytes | None) -> str:
    """What a log line may say about an IdP reply: its OAuth ``error`` and a redacted description.

    Anything else (a non-JSON page, unexpected fields) is described by its size and field names
    only, so a body echoing a token never reaches the log whole.
    """
    if not body:
        return "empty body"
    try:
        value = json.loads(body.decode("utf-8", "replace"))
    except ValueError:
        return f"a non-JSON body of {len(body)} bytes"
    if not isinstance(value, dict):
        return f"a JSON {type(value).__name__}, not an object"
    error = value.get("error")
    if isinstance(error, str) and _ERROR_CODE.fullmatch(error):
        description = value.get("error_description")
        extra = f" ({redact(description, limit=160)})" if isinstance(description, str) else ""
        return f"error {error}{extra}"
    return f"a JSON object with fields {redact(sorted(map(str, value))[:12], limit=160)}"


def _is_unavailable(err: Exception) -> bool:
    if isinstance(err, HTTPClientError):
        return err.code == 599 or err.code >= 500
    return isinstance(err, OSError)


class DatalakeOAuthenticator(GenericOAuthenticator):  # type: ignore[misc]
    """GenericOAuthenticator for ESCAPE IAM; configured by `hub_config.auth.configure`."""

    callback_handler = DatalakeCallbackHandler

    datalake_issuer = Unicode(help="Issuer; part of the subject digest in normalised usernames.").tag(config=True)
    datalake_groups = AnyTrait(help="hub_config GroupsClaim: where groups come from.").tag(config=True)
    datalake_access_groups = List(Unicode(), help="Groups named on the 403 page.").tag(config=True)
    refresh_margin_seconds = Integer(
        120, help="Refresh the access token when it has less than this many seconds left."
    ).tag(config=True)

    def get_handlers(self, app: Any) -> list[tuple[str, Any]]:
        """OAuthenticator's login routes plus the admins' profile status (hub_config/status.py)."""
        from ..status import handlers

        return [*super().get_handlers(app), *handlers()]

    async def httpfetch(self, url: str, *args: Any, **kwargs: Any) -> Any:
        """OAuthenticator's fetch, verifying the IdP cheaply with either tornado client (see ``hub_config.tls``).

        The config keeps the bundle's path in ``http_request_kwargs``: a context there cannot be
        deep-copied, and the pycurl client of the z2jh image accepts only the path.
        """
        ca_certs = self.http_request_kwargs.get("ca_certs")
        if ca_certs and "ssl_options" not in kwargs and "ca_certs" not in kwargs:
            kwargs.update(request_tls_options(ca_certs))
        return await super().httpfetch(url, *args, **kwargs)

    async def fetch(self, req: Any, label: str = "fetching", parse_json: bool = True, **kwargs: Any) -> Any:
        """OAuthenticator's ``fetch`` without its logging of the IdP's reply body.

        OAuthenticator logs the whole error body at ERROR on ``tornado.application``; an IdP reply
        can echo refresh tokens or the client secret. Here the line names the status, method, URL
        (without query) and :func:`idp_reply_summary`; the error raised (``HTTPClientError``)
        prints only its status. A 200 reply that is not JSON is a :class:`SignInFailed`, not a
        ``JSONDecodeError`` whose document is the body.
        """
        try:
            resp = await self.http_client.fetch(req, **kwargs)
        except HTTPClientError as err:
            url = urlunparse(urlparse(req.url)._replace(query=""))
            summary = idp_reply_summary(err.response.body if err.response is not None else None)
            self.log.error("Error %s %s %s %s: %s", label, err.code, req.method, url, summary)
            raise
        if not parse_json:
            return resp
        if not resp.body:
            return None
        try:
            return json.loads(resp.body.decode("utf8", "replace"))
        except ValueError:
            url = urlunparse(urlparse(req.url)._replace(query=""))
            self.log.error(
                "Error %s %s %s: HTTP %s with %s", label, req.method, url, resp.code, idp_reply_summary(resp.body)
            )
            raise SignInFailed(self.login_service) from None

    async def get_token_info(self, handler: Any, params: dict[str, Any]) -> dict[str, Any]:
        """OAuthenticator's token request; a reply without an access token is :class:`SignInFailed`.

        OAuthenticator's own version puts the reply in the raised ``HTTPError`` (and so on the
        error page); this one logs :func:`idp_reply_summary` and raises without the reply.
        An unreachable IdP (connection error, timeout, 5xx) is :class:`SignInUnavailable`.
        """
        try:
            info = await self.httpfetch(
                self.token_url,
                method="POST",
                headers=self.build_token_info_request_headers(),
                body=urlencode(params).encode("utf-8"),
                validate_cert=self.validate_server_cert,
            )
        except (HTTPClientError, OSError) as err:
            if _is_unavailable(err):
                self.log.warning("Token endpoint unreachable (%s)", type(err).__name__)
                raise SignInUnavailable(self.login_service) from None
            raise
        if not isinstance(info, dict) or not isinstance(info.get("access_token"), str) or "error" in info:
            summary = idp_reply_summary(json.dumps(info).encode())
            self.log.error("Token endpoint answered without an access token: %s", summary)
            raise SignInFailed(self.login_service)
        return info

    def build_auth_state_dict(self, token_info: dict[str, Any], user_info: dict[str, Any]) -> dict[str, Any]:
        """OAuthenticator's auth state, without its second copy of every token.

        OAuthenticator keeps the whole token reply as ``token_response`` next to ``access_token``,
        ``refresh_token`` and ``id_token``: each token stored twice, so the encrypted state every
        login writes, and the hub keeps per user, was ~1.7x as big. The reply's other fields
        (``token_type``, ``expires_in``, ...) are kept there.
        """
        state: dict[str, Any] = super().build_auth_state_dict(token_info, user_info)
        response = state.get("token_response")
        if isinstance(response, dict):
            state["token_response"] = {k: v for k, v in response.items() if k not in _TOKEN_FIELDS}
        return state

    def user_info_to_username(self, user_info: dict[str, Any]) -> str:
        raw = super().user_info_to_username(user_info)
        return normalise_username(str(raw), issuer=self.datalake_issuer, sub=str(user_info.get("sub", "")))

    def groups_of(self, auth_state: dict[str, Any]) -> list[str]:
        """Group names of a user from their auth state (the claims the IdP returned)."""
        spec: GroupsClaim = self.datalake_groups or GroupsClaim()
        claims = dict(jwt_claims(auth_state.get("access_token")) or {})
        claims.update(auth_state.get(self.user_auth_state_key) or {})
        return groups_from_claims(claims, spec)

    async def get_user_groups(self, auth_state: dict[str, Any]) -> set[str]:
        return set(self.groups_of(auth_state))

    async def token_to_user(self, token_info: dict[str, Any]) -> dict[str, Any]:
        try:
            user: dict[str, Any] = await super().token_to_user(token_info)
        except (HTTPClientError, OSError) as err:
            if _is_unavailable(err):
                self.log.warning("Userinfo endpoint unreachable (%s)", type(err).__name__)
                raise SignInUnavailable(self.login_service) from None
            raise
        return user

    async def authenticate(self, handler: Any, data: Any = None, **kwargs: Any) -> dict[str, Any] | None:
        try:
            model: dict[str, Any] | None = await super().authenticate(handler, data, **kwargs)
        except HTTPClientError as err:
            # the IdP refused the code exchange or the userinfo request (a 4xx): already logged
            # by `fetch` with the error code; the page says so without the reply
            self.log.warning("Sign-in refused by the IdP (HTTP %s)", err.code)
            raise SignInFailed(self.login_service) from None
        if model and handler is not None:
            model["name"] = await self._claim_name(handler.db, model)
        return model

    async def _claim_name(self, db: Any, model: dict[str, Any]) -> str:
        """The hub name of this identity, never one the database keeps for another IAM subject.

        See `usernames`: the primary name if it is free or already ours, else the fallback if free or
        ours (an identity already on its fallback keeps it even once the primary is free), else 403.
        A hub user without a saved subject (created by an admin, not yet signed in) is free.
        """
        user_info = model.get("auth_state", {}).get(self.user_auth_state_key) or {}
        sub = user_info.get("sub")
        if not isinstance(sub, str) or not sub:
            self.log.error("Refusing login of %s: the IdP sent no subject", model["name"])
            raise _forbidden(f"{self.login_service} did not say who you are (no subject). Contact the hub admins.")
        raw = str(super().user_info_to_username(user_info))
        primary, fallback = username_candidates(raw, issuer=self.datalake_issuer, sub=sub)
        owners = {primary: await self._owner(db, primary)}
        if owners[primary] == sub:
            return self._pending(primary, sub)
        owners[fallback] = await self._owner(db, fallback)
        if owners[fallback] == sub:
            return self._pending(fallback, sub)
        if owners[primary] is None:
            return self._pending(primary, sub)
        if owners[fallback] is None:
            self.log.warning("Hub user %s belongs to another IAM subject; signing in as %s", primary, fallback)
            return self._pending(fallback, sub)
        self.log.error("Refusing login: hub users %s and %s belong to other IAM subjects", primary, fallback)
        raise _forbidden("This hub account name is already used by a different IAM identity. Contact the hub admins.")

    def _claims(self) -> dict[str, tuple[str, float]]:
        claims: dict[str, tuple[str, float]] = self.__dict__.setdefault("_datalake_name_claims", {})
        return claims

    async def _owner(self, db: Any, name: str) -> str | None:
        """The subject ``name`` belongs to: saved in the database, or handed out moments ago.

        JupyterHub saves the auth state (our record of the subject) only after creating the user,
        and encrypting it yields the event loop: a second identity arriving for the same name in
        between would find a user without a subject. The hub is one process, so names handed out
        in the last minute, kept here, close that window.
        """
        known: dict[str, tuple[Any, str]] = self.__dict__.setdefault("_datalake_known_subjects", {})
        saved = await _saved_subject(db, name, self.user_auth_state_key, known)
        if saved is not None:
            return saved
        pending = self._claims().get(name)
        return pending[0] if pending and time.monotonic() - pending[1] < _CLAIM_SECONDS else None

    def _pending(self, name: str, sub: str) -> str:
        claims = self._claims()
        now = time.monotonic()
        for stale in [n for n, (_, at) in claims.items() if now - at >= _CLAIM_SECONDS]:
            del claims[stale]
        claims[name] = (sub, now)
        return name

    async def check_allowed(self, username: str, auth_model: dict[str, Any] | None) -> bool:
        if await super().check_allowed(username, auth_model):
            return True
        groups = ", ".join(self.datalake_access_groups) or "(none configured)"
        self.log.info("Refusing %s: not a member of any allowed group", username)
        err = web.HTTPError(403)
        err.jupyterhub_message = (  # type: ignore[attr-defined]
            f"Your {self.login_service} account is not allowed on this hub. Access requires membership "
            f"of one of these {self.login_service} groups: {groups}. Ask your group manager to add you, "
            "then sign in again."
        )
        raise err

    def _user_lock(self, name: str) -> asyncio.Lock:
        locks: dict[str, asyncio.Lock] = self.__dict__.setdefault("_datalake_refresh_locks", {})
        return locks.setdefault(name, asyncio.Lock())

    async def refresh_user(self, user: Any, handler: Any = None, **kwargs: Any) -> bool | dict[str, Any]:
        """Refresh near expiry; one refresh per user at a time (page requests and the Rucio rotator).

        This is the hub's only token refresh: JupyterHub calls it on requests (``auth_refresh_age``)
        and before each spawn (``refresh_pre_spawn``), the Rucio rotator through the spawner; the
        refresh request itself is OAuthenticator's (``build_refresh_token_request_params``).

        IdPs may rotate refresh tokens and treat reuse as theft, so two concurrent refreshes with
        one token must never happen: the second waits, then finds the fresh state saved by the first.
        """
        if not self.enable_auth_state:
            return True
        async with self._user_lock(user.name):
            result = await self._refresh_locked(user, handler)
            if isinstance(result, dict) and result.get("auth_state"):
                await user.save_auth_state(result["auth_state"])
            return result

    async def _refresh_locked(self, user: Any, handler: Any) -> bool | dict[str, Any]:
        auth_state = await user.get_auth_state()
        if not auth_state:
            return False
        exp = (jwt_claims(auth_state.get("access_token")) or {}).get("exp")
        now = time.time()
        if isinstance(exp, int | float) and exp - now > self.refresh_margin_seconds:
            return True
        refresh_token = auth_state.get("refresh_token")
        if not refresh_token:
            self.log.info("No refresh token for %s; a new login is needed", user.name)
            return False
        took = timer()
        outcome = "unavailable"
        try:
            result = await self._refresh_at_idp(user, handler, refresh_token)
            outcome = "success" if isinstance(result, dict) else "refused" if result is False else "unavailable"
            return result
        finally:
            METRICS.token_request("refresh_token", outcome, took())

    async def _refresh_at_idp(self, user: Any, handler: Any, refresh_token: str) -> bool | dict[str, Any]:
        """The refresh grant and the userinfo call: the new auth model, False when the IdP says no,
        True when it cannot be asked (the session is kept)."""
        params = self.build_refresh_token_request_params(refresh_token)
        try:
            token_info = await self.get_token_info(handler, params)
        except SignInUnavailable:
            self.log.warning("IdP unreachable while refreshing %s; keeping the current session", user.name)
            return True
        except SignInFailed:
            self.log.warning("IdP sent no usable tokens refreshing %s; keeping the current session", user.name)
            return True
        except HTTPClientError as err:
            self.log.info("Refresh token for %s rejected (HTTP %s); a new login is needed", user.name, err.code)
            return False
        if not token_info.get("refresh_token"):
            token_info["refresh_token"] = refresh_token
        try:
            model: dict[str, Any] = await self._token_to_auth_model(token_info)
        except (SignInUnavailable, SignInFailed):
            return True
        except HTTPClientError as err:
            self.log.info("Fresh token for %s not accepted (HTTP %s); a new login is needed", user.name, err.code)
            return False
        self.log.info("Refreshed tokens of %s", user.name)
        return model


def _forbidden(message: str) -> web.HTTPError:
    err = web.HTTPError(403)
    err.jupyterhub_message = message  # type: ignore[attr-defined]
    return err


_USERS = orm.User.__table__
_SAVED_STATE = (
    select(_USERS.c.id, _USERS.c.created, _USERS.c.encrypted_auth_state)
    .where(_USERS.c.name == bindparam("name"))
    .limit(1)
)

# Auth states up to this size are decrypted on the event loop (~26 us for our ~2.4 kB states): the
# hand-off to CryptKeeper's thread pool cost the loop more than the decryption itself. A larger
# state (an IdP's bloated userinfo) still goes to the pool so the loop never stalls on it.
_INLINE_DECRYPT_BYTES = 64 * 1024


async def _decrypted(blob: bytes) -> Any:
    """The auth state in ``blob``, decrypted as JupyterHub's CryptKeeper does (same keys, same JSON)."""
    fernet = CryptKeeper.instance().fernet
    if fernet is None or len(blob) > _INLINE_DECRYPT_BYTES:
        return await decrypt(blob)  # raises what JupyterHub raises when no key is configured
    return json.loads(fernet.decrypt(blob).decode("utf8"))


async def _saved_subject(db: Any, name: str, key: str, known: dict[str, tuple[Any, str]]) -> str | None:
    """The IAM subject saved with hub user ``name`` (None: no such user, or none saved or readable).

    Three columns through a prepared Core statement, not ``handler.find_user``: loading the whole
    ORM user (roles, groups, tokens, spawners) costs a third of the hub's CPU per login, and
    JupyterHub loads it again right after; an ORM column query still cost ~150 us against ~25 us.
    The decrypted subject is kept in ``known`` by what it was read from: the user row's identity
    (id and creation time) and a digest of the saved auth state. A deleted and re-created user is
    a different row, and an auth state written since (a login, an admin's PATCH rebinding the
    name) has a different digest: both are read again, never answered from memory.
    """
    row = db.execute(_SAVED_STATE, {"name": name}).first()
    if row is None:
        known.pop(name, None)
        return None
    if row[2] is None:
        known.pop(name, None)
        return None
    identity = (row[0], row[1], hashlib.blake2b(row[2], digest_size=16).digest())
    cached = known.get(name)
    if cached is not None and cached[0] == identity:
        return cached[1]
    try:
        state = await _decrypted(row[2])
    except Exception:  # noqa: BLE001 - as JupyterHub's get_auth_state: unreadable means "none"
        return None
    user_info = state.get(key) if isinstance(state, dict) else None
    sub = user_info.get("sub") if isinstance(user_info, dict) else None
    if not isinstance(sub, str) or not sub:
        known.pop(name, None)
        return None
    if len(known) >= _KNOWN_SUBJECTS and name not in known:
        known.pop(next(iter(known)))
    known[name] = (identity, sub)
    return sub
