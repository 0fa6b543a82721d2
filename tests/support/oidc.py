"""The hub's OAuth login at the platform IdP: kept as an import path, the code is in :mod:`localplatform.clients`.

Tests and benchmarks share one implementation there; new code imports it from there directly.
"""

from localplatform.clients import REDIRECT, code_login

__all__ = ["REDIRECT", "code_login"]
