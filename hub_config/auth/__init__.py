"""Sign-in with ESCAPE IAM: discovery, username and group mapping, the authenticator, its configuration."""

from .configure import AuthConfigError, apply_auth, read_client_secret
from .discovery import DiscoveryError, OIDCEndpoints, discover

__all__ = [
    "AuthConfigError",
    "DiscoveryError",
    "OIDCEndpoints",
    "apply_auth",
    "discover",
    "read_client_secret",
]
