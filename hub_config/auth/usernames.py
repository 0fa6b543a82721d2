"""IAM (issuer, sub, `preferred_username`) → a safe JupyterHub username no other IAM identity can get.

JupyterHub rejects names like `../Evil User@x`, and names end up in pod names, labels and the
NFS home subdirectory. The rule (documented for users in docs/users.md):

1. Normalise: Unicode NFKC, transliterated to ASCII (`Jürgen` → `jurgen`), lower-cased; every run
   of characters outside `a-z 0-9 . _ -` becomes `-`; runs of `.` and of `-` collapse to one;
   leading/trailing `. _ -` are dropped (so `..` can never appear).
2. **Verbatim** (the *primary* name is the raw claim itself): only if normalising changed
   nothing, the name has 1–32 characters, and it does *not* end in `-` followed by 8 or more
   hex digits (`0-9a-f`): that ending is reserved for derived names.
3. **Derived** otherwise: `<stem>-<d8>`, where `d8` is the first 8 hex digits of SHA-256 over
   issuer and subject and the stem is the normalised name cut to fit 32 characters (`user` if
   nothing is left).
4. **Fallback**, chosen only by the authenticator when the hub's database says the primary name
   belongs to another IAM subject: `<stem>-<d16>` (16 hex digits of the same digest, stem cut
   to 15 characters).

Why no name can go to two identities:

- Verbatim names never end in `-` + 8 or more hex digits; derived and fallback names always do. So
  a `preferred_username` can never be, or squat, anyone's derived name: `alice-1a2b3c4d` as a
  raw claim is itself derived (`alice-1a2b3c4d-<its own digest>`).
- Primary derived names have `-` ninth from the end, fallback names a hex digit there: the two
  sets are disjoint, and the last 9 (or 17) characters parse uniquely into stem and digest.
- Two verbatim names are equal only if the claims are equal. Two derived names are equal only if
  stem and digest are. Neither is impossible *as a function* (IAM could give a deleted account's
  username to a new one; two subjects can share 32 digest bits, about 1 in 4·10⁹ per pair with the
  same stem), which is why the function alone is not the guarantee:
- At sign-in the authenticator looks the name up in the hub's database and never hands a name
  to an identity other than the subject saved with it: the primary name if free or its own, else
  the fallback if free or its own, else a 403. A name once saved with a subject is that subject's
  for good, and an identity already on its fallback name keeps it. Names handed out but whose
  subject JupyterHub has not saved yet count as taken too (the authenticator remembers them for a
  minute; the hub is one process). A hub user with no subject saved (created by an admin, never
  signed in, or its auth state unreadable) is free: the first identity mapping to it takes it.

A given identity with a given claim always gets the same primary name; names that need no change
(`alice`, `dave.smith`) are kept as they are, and derived names are those of the earlier scheme.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

from text_unidecode import unidecode

__all__ = ["MAX_LENGTH", "is_derived", "normalise_username", "username_candidates"]

MAX_LENGTH = 32
_PRIMARY_DIGEST = 8
_FALLBACK_DIGEST = 16
_UNSAFE = re.compile(r"[^a-z0-9._-]+")
_DOTS = re.compile(r"\.{2,}")
_DASHES = re.compile(r"-{2,}")
_DERIVED_SHAPE = re.compile(r"-[0-9a-f]{8,}\Z")


def _subject_digest(issuer: str, sub: str) -> str:
    """SHA-256 hex digest identifying an IAM identity (issuer + subject)."""
    return hashlib.sha256(f"{issuer}\0{sub}".encode()).hexdigest()


def _normalised(raw: str) -> str:
    text = unidecode(unicodedata.normalize("NFKC", raw)).lower()
    text = _UNSAFE.sub("-", text)
    text = _DOTS.sub(".", text)
    text = _DASHES.sub("-", text)
    return text.strip("._-")


def _derived(text: str, digest: str) -> str:
    stem = text[: MAX_LENGTH - len(digest) - 1].rstrip("._-") or "user"
    return f"{stem}-{digest}"


def is_derived(name: str) -> bool:
    """True for names of the derived shape (ending in `-` and 8+ hex digits): never verbatim."""
    return _DERIVED_SHAPE.search(name) is not None


def normalise_username(raw: str, *, issuer: str, sub: str) -> str:
    """The primary JupyterHub username for IAM identity (issuer, sub) whose username claim is ``raw``."""
    text = _normalised(raw)
    if text == raw and 0 < len(text) <= MAX_LENGTH and not is_derived(text):
        return text
    return _derived(text, _subject_digest(issuer, sub)[:_PRIMARY_DIGEST])


def username_candidates(raw: str, *, issuer: str, sub: str) -> tuple[str, str]:
    """(primary, fallback) names of the identity; the fallback is used only if another subject holds the primary."""
    digest = _subject_digest(issuer, sub)
    primary = normalise_username(raw, issuer=issuer, sub=sub)
    return primary, _derived(_normalised(raw), digest[:_FALLBACK_DIGEST])
