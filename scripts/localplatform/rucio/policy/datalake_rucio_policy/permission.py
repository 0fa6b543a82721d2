"""Permissions: the generic policy, except that accounts may add and validate replicas on RSEs with
the attribute ``user_upload = True``.

Scopes stay protected: adding a replica of a new file also needs ``add_dids`` (checked by Rucio's
gateway on its own), which the generic policy grants only in scopes the account owns, so alice can
upload to ``user.alice`` and not to ``user.bob``. ``update_replicas_states`` names only the RSE, so
on an upload RSE any account may mark replicas there available (as on a site's scratch disk).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rucio.core.permission import generic
from rucio.core.rse import get_rse_attribute

if TYPE_CHECKING:
    from rucio.common.types import InternalAccount
    from sqlalchemy.orm import Session

UPLOAD_ACTIONS = frozenset({"add_replicas", "update_replicas_states"})
UPLOAD_ATTRIBUTE = "user_upload"


def _upload_rse(kwargs: dict[str, Any], session: Session | None) -> bool:
    rse_id = kwargs.get("rse_id")
    if not rse_id:
        return False
    value = get_rse_attribute(rse_id, UPLOAD_ATTRIBUTE, use_cache=False, session=session)
    return value is True or str(value).lower() == "true"


def has_permission(
    issuer: InternalAccount, action: str, kwargs: dict[str, Any], *, session: Session | None = None
) -> bool:
    """Rucio's entry point for every permission check."""
    if action in UPLOAD_ACTIONS and _upload_rse(kwargs, session):
        return True
    return bool(generic.has_permission(issuer, action, kwargs, session=session))
