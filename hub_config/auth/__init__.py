"""Sign-in with ESCAPE IAM: discovery, username and group mapping, the authenticator, its configuration."""

from .configure import AuthConfigError, apply_auth, read_client_secret
from .discovery import DiscoveryError, OIDCEndpoints, discover
from .groups import groups_from_claims
from .usernames import normalise_username

__all__ = [
    "AuthConfigError",
    "DiscoveryError",
    "OIDCEndpoints",
    "apply_auth",
    "discover",
    "groups_from_claims",
    "normalise_username",
    "read_client_secret",
]
