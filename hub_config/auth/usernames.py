"""IAM `preferred_username` → a safe JupyterHub username that never collides across IAM subjects.

JupyterHub rejects names like `../Evil User@x`, and names end up in pod names, labels and the
NFS home subdirectory. Normalisation (documented for users in docs/users.md):

1. Unicode NFKC, then transliterated to ASCII (`Jürgen` → `jurgen`), lower-cased.
2. Every run of characters outside `a-z 0-9 . _ -` becomes `-`; runs of `.` collapse to one;
   leading/trailing `. _ -` are dropped (so `..` can never appear).
3. If anything was changed, or the name is longer than 32 characters, `-` and 8 hex characters of
   SHA-256 over issuer and subject are appended (the name is cut to fit first). Distinct IAM
   identities therefore get distinct names even when their usernames normalise alike
   (`Alice` vs `alice`), and a given identity always gets the same name.

Names that need no change (`alice`, `dave.smith`) are kept as they are.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

from text_unidecode import unidecode

__all__ = ["MAX_LENGTH", "normalise_username"]

MAX_LENGTH = 32
_UNSAFE = re.compile(r"[^a-z0-9._-]+")
_DOTS = re.compile(r"\.{2,}")
_DASHES = re.compile(r"-{2,}")


def _subject_digest(issuer: str, sub: str) -> str:
    """8 hex characters identifying an IAM identity (issuer + subject)."""
    return hashlib.sha256(f"{issuer}\0{sub}".encode()).hexdigest()[:8]


def normalise_username(raw: str, *, issuer: str, sub: str) -> str:
    """The JupyterHub username for IAM identity (issuer, sub) whose username claim is ``raw``."""
    text = unidecode(unicodedata.normalize("NFKC", raw)).lower()
    text = _UNSAFE.sub("-", text)
    text = _DOTS.sub(".", text)
    text = _DASHES.sub("-", text)
    text = text.strip("._-")
    if text == raw and 0 < len(text) <= MAX_LENGTH:
        return text
    suffix = _subject_digest(issuer, sub)
    stem = text[: MAX_LENGTH - len(suffix) - 1].rstrip("._-") or "user"
    return f"{stem}-{suffix}"
