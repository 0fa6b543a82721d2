"""The Rucio panel's answers that datalake-hub corrects: "make available" and a pending rule.

rucio-jupyterlab 41 posts the replication rule and returns whatever Rucio answered with HTTP 200,
so asking twice shows Rucio's ``DuplicateRule`` body as if it were a result, and a refusal by the
permission policy (Rucio answers ``AccessDenied``, HTTP 500 on this endpoint) never reaches the
user as one. A rule Rucio has accepted but not yet completed shows "Replicating files..." forever
with no reason when nothing transfers. We answer those two requests ourselves, with the
extension's own API client (``RucioAPI``, the token the hub writes) and in its JSON shapes:

- ``POST did/make-available`` (replica mode): a new rule → 200 with its id; a rule that exists
  already → 200 with that rule's id and state (asking twice is not an error); a permission
  refusal → 403 "Permission denied: ..." (the panel shows the text; a 401 would make it say
  "Authentication error"); other refusals → 409/502 naming Rucio's reason. Download mode is
  left to the extension.
- ``GET did`` (replica mode, one file): a file whose rule is REPLICATING is answered with the
  status the panel shows a message for (``FETCHING``, which it keeps polling, as it polls
  ``REPLICATING``) and a message saying the copy is pending: the rule, how many files are copied,
  and what completes it. Once Rucio marks the replica available the extension's own answer (OK,
  with the path) comes through unchanged.

The panel's frontend is not patched: these are server-side answers in the shapes it already reads.
Pure functions (:func:`make_available`, :func:`pending_details`, :func:`refusal`) take the
extension's ``RucioAPI`` and are what the handlers call and the tests exercise.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["install_handlers", "make_available", "pending_details", "refusal", "rucio_error"]

log = logging.getLogger("datalake_lab")

PERMISSION_REFUSALS = frozenset({"AccessDenied"})
"""Rucio's exception classes for "your account may not": the permission policy said no."""
AUTH_FAILURES = frozenset({"CannotAuthenticate"})
"""Rucio's exception classes for "who are you": the token was not accepted."""

PENDING_STATUS = "FETCHING"
"""The file status the panel renders with the server's ``message`` (and keeps polling)."""


def rucio_error(body: object) -> tuple[str, str] | None:
    """(class, message) when ``body`` is Rucio's error answer (``{"ExceptionClass": ..., ...}``)."""
    if isinstance(body, Mapping) and isinstance(body.get("ExceptionClass"), str):
        return str(body["ExceptionClass"]), str(body.get("ExceptionMessage") or "")
    return None


def refusal(exception_class: str | None, message: str, *, action: str, answered: bool = True) -> tuple[int, str]:
    """HTTP status and the one line the panel shows for Rucio refusing ``action``.

    A permission refusal reads as one (403), never as an authentication failure: Rucio's client
    and the panel both turn Rucio's 401s into "authentication" messages, which sends users to
    their credentials when it is the policy that said no. ``answered``: Rucio answered with that
    refusal (False: no answer came, e.g. the connection failed).
    """
    said = f" Rucio said: {message}" if message else ""
    if exception_class in PERMISSION_REFUSALS:
        return 403, f"Permission denied: your Rucio account may not {action}.{said}"
    if exception_class in AUTH_FAILURES:
        return 401, f"Rucio did not accept your sign-in token (the hub renews it; retry in a minute).{said}"
    if answered and exception_class:
        return 409, f"Rucio refused to {action} ({exception_class}).{said}"
    return 502, f"Rucio could not {action}: {message or 'no answer'}"


def _rules_to(api: Any, scope: str, name: str, rse: str) -> list[dict[str, Any]]:
    rules: Iterable[Any] = api.get_rules(scope, name)
    return [r for r in rules if isinstance(r, dict) and r.get("rse_expression") == rse]


def make_available(api: Any, scope: str, name: str) -> tuple[int, dict[str, Any]]:
    """Ask Rucio for a replication rule of ``scope:name`` to the instance's ``destination_rse``.

    ``api``: the extension's ``RucioAPI`` for the instance (its config, its token). Returns the
    HTTP status and JSON body for the panel; never raises for what Rucio answers.
    """
    config = api.instance_config
    rse = config.get("destination_rse")
    days = config.get("replication_rule_lifetime_days")
    lifetime = days * 86400 if days else None
    action = f"create a replication rule for {scope}:{name} to {rse}"
    try:
        answer = api.add_replication_rule(
            dids=[{"scope": scope, "name": name}], copies=1, rse_expression=rse, lifetime=lifetime
        )
    except Exception as err:  # noqa: BLE001 - the extension raises its own and requests' errors
        cls = getattr(err, "exception_class", None)
        status, text = refusal(cls, _reason(err), action=action, answered=_answered(err))
        return status, {"success": False, "error": text}
    if isinstance(answer, list) and answer:
        return 200, {"success": True, "rule_id": str(answer[0]), "existing": False, "message": f"Rule created to {rse}"}
    error = rucio_error(answer)
    if error is None:
        return 502, {"success": False, "error": f"Rucio gave an unexpected answer to a rule request: {answer!r:.200}"}
    if error[0] == "DuplicateRule":
        existing = _rules_to(api, scope, name, rse)
        if existing:
            rule = existing[0]
            state = rule.get("state")
            return 200, {
                "success": True,
                "rule_id": rule.get("id"),
                "existing": True,
                "state": state,
                "message": f"A replication rule to {rse} already exists ({rule.get('id')}, {state})",
            }
    status, text = refusal(error[0], error[1], action=action)
    return status, {"success": False, "error": text, "exception_class": error[0], "exception_message": error[1]}


def _answered(err: BaseException) -> bool:
    """Did Rucio answer (an HTTP error from the server), rather than no answer at all?"""
    status = getattr(err, "status_code", None)
    return getattr(err, "response", None) is not None and isinstance(status, int)


def _reason(err: BaseException) -> str:
    return str(getattr(err, "message", None) or err)[:300]


def pending_details(api: Any, scope: str, name: str, details: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The extension's answer for one file, with a pending rule said as such (see the module)."""
    did = f"{scope}:{name}"
    if len(details) != 1 or details[0].get("did") != did or details[0].get("status") != "REPLICATING":
        return details
    rse = api.instance_config.get("destination_rse")
    try:
        rules = _rules_to(api, scope, name, rse)
    except Exception as err:  # noqa: BLE001 - the rule is only there to say more; its absence says less
        log.warning("datalake_lab: could not read the rules of %s: %s", did, _reason(err))
        rules = []
    rule = rules[0] if rules else {}
    ok, total = rule.get("locks_ok_cnt"), _total_locks(rule)
    progress = f", {ok} of {total} file(s) copied" if isinstance(ok, int) and total else ""
    since = f", since {rule['created_at']}" if rule.get("created_at") else ""
    ident = f" {rule['id']}" if rule.get("id") else ""
    # Most telling first: the panel cuts the line at its width (a user can widen the sidebar).
    message = (
        f"Pending transfer to {rse}{progress}: the site's transfer service (FTS) makes the copy, and the "
        f"file shows as available here once it is done. Rule{ident}{since}; ask your site's admins if it "
        "stays pending."
    )
    return [{**details[0], "status": PENDING_STATUS, "message": message, "rule_state": "REPLICATING"}]


def _total_locks(rule: Mapping[str, Any]) -> int:
    counts = [rule.get(k) for k in ("locks_ok_cnt", "locks_replicating_cnt", "locks_stuck_cnt")]
    return sum(c for c in counts if isinstance(c, int))


def install_handlers(web_app: Any) -> list[str]:
    """Answer make-available and file details ahead of rucio-jupyterlab's own handlers; return the paths.

    Tornado tries host rules in the order they were added, and the extension adds its own when it
    loads, so ours are moved to the front: whichever extension loads first, these answer.
    """
    from jupyter_server.utils import url_path_join
    from rucio_jupyterlab.config import Config, RucioConfig
    from rucio_jupyterlab.rucio import RucioAPIFactory

    make_handler, details_handler = _handler_classes()
    config = Config(RucioConfig(config=web_app.settings["config"]))
    params = {"rucio_config": config, "rucio": RucioAPIFactory(config=config)}
    base = url_path_join(web_app.settings["base_url"], "rucio-jupyterlab")
    paths = [url_path_join(base, "did", "make-available"), url_path_join(base, "did")]
    rules = web_app.default_router.rules
    before = list(rules)
    web_app.add_handlers(".*$", [(paths[0], make_handler, params), (paths[1], details_handler, params)])
    ours = [rule for rule in rules if rule not in before]
    for rule in ours:
        rules.remove(rule)
    rules[0:0] = ours
    return paths


def _handler_classes() -> tuple[type, type]:
    """The two handlers, subclasses of the extension's (its auth, credential check and errors)."""
    import tornado.web
    from rucio_jupyterlab.handlers.base import run_in_api_executor
    from rucio_jupyterlab.handlers.did_details import DIDDetailsHandler
    from rucio_jupyterlab.handlers.did_make_available import DIDMakeAvailableHandler
    from rucio_jupyterlab.mode_handlers.replica import ReplicaModeHandler
    from rucio_jupyterlab.rucio.exceptions import RucioAPIException

    def _replica_api(handler: Any) -> Any | None:
        """The instance's ``RucioAPI`` when it is in replica mode (download mode stays the extension's)."""
        api = handler.rucio.for_instance(handler.get_query_argument("namespace"))
        return api if api.instance_config.get("mode", "replica") == "replica" else None

    class MakeAvailableHandler(DIDMakeAvailableHandler):  # type: ignore[misc]
        @tornado.web.authenticated
        async def post(self) -> None:
            api = _replica_api(self)
            if api is None:
                super().post()
                return
            scope, _, name = str(self.get_json_body()["did"]).partition(":")
            status, body = await run_in_api_executor(make_available, api, scope, name)
            log.info("datalake_lab: make available %s:%s -> %s %s", scope, name, status, body.get("message", ""))
            self.set_status(status)
            self.finish(json.dumps(body))

    class DetailsHandler(DIDDetailsHandler):  # type: ignore[misc]
        @tornado.web.authenticated
        async def get(self) -> None:
            api = _replica_api(self)
            if api is None:
                await super().get()
                return
            namespace = self.get_query_argument("namespace")
            force = self.get_query_argument("force", "0") == "1"
            scope, _, name = self.get_query_argument("did").partition(":")
            try:
                handler = ReplicaModeHandler(namespace, api)
                details = await run_in_api_executor(handler.get_did_details, scope, name, force)
                details = await run_in_api_executor(pending_details, api, scope, name, details)
            except RucioAPIException as err:
                answered = _answered(err)
                status, text = refusal(
                    err.exception_class, err.message or "", action=f"show {scope}:{name}", answered=answered
                )
                self.set_status(status)
                self.finish(json.dumps({"success": False, "error": text, "exception_class": err.exception_class}))
                return
            self.finish(json.dumps(details))

    return MakeAvailableHandler, DetailsHandler
