"""Sign-in with ESCAPE IAM: discovery, username and group mapping, the authenticator, its configuration."""

from .configure import apply_auth, read_client_secret
from .discovery import OIDCEndpoints, discover

__all__ = [
    "OIDCEndpoints",
    "apply_auth",
    "discover",
    "read_client_secret",
]
