"""Sign-in with ESCAPE IAM: discovery, username and group mapping, the authenticator, its configuration."""

from .configure import apply_auth, apply_auth_state_key, read_client_secret
from .discovery import OIDCEndpoints, discover

__all__ = [
    "OIDCEndpoints",
    "apply_auth",
    "apply_auth_state_key",
    "discover",
    "read_client_secret",
]
