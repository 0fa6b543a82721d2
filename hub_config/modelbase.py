"""Shared building blocks of the settings and profile models.

Every model forbids unknown keys (a typo must fail loudly, not be ignored), is frozen (settings
are parsed once and shared) and describes each field, because the same models generate the
chart's values schema and its reference documentation.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

__all__ = [
    "IMAGE_REF_PATTERN",
    "K8S_NAME",
    "MEMORY_PATTERN",
    "NAME_PATTERN",
    "PATTERN_MEANINGS",
    "AbsPath",
    "HttpUrl",
    "HttpsUrl",
    "K8sName",
    "KeyedValueError",
    "NonEmptyStr",
    "Quantity",
    "Strict",
    "Toleration",
]


class Strict(BaseModel):
    """Base of every settings/profile model: unknown keys rejected, immutable, documented."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=False)


class KeyedValueError(ValueError):
    """A cross-section rule's refusal that names the settings key it is about.

    pydantic places an error raised by a model validator at that model, so a rule that compares
    two sections (the Rucio instance's RSE and the storage's EOS mount) would be reported at the
    top of the document. The problem builder (:func:`hub_config.yamlsource.problems_from_validation`)
    appends ``key`` to the error's place, so ``validate`` prints the line and key of the value to fix.
    """

    def __init__(self, key: tuple[str | int, ...], message: str) -> None:
        super().__init__(message)
        self.key = key


NonEmptyStr = Annotated[str, StringConstraints(min_length=1)]
"""A string that is set. ``""`` never means "unset" here; use null (None)."""

MEMORY_PATTERN = r"^([1-9][0-9]*(\.[0-9]+)?|0\.[0-9]*[1-9][0-9]*)[KMGT]$"
"""A positive size: `0`/`0G` would make KubeSpawner set no limit at all, silently."""
_DOMAIN_PART = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_PATH_PART = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
IMAGE_REF_PATTERN = (
    rf"^(?:{_DOMAIN_PART}(?:\.{_DOMAIN_PART})*(?::[0-9]+)?/)?{_PATH_PART}(?:/{_PATH_PART})*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?$"
)
"""An OCI image reference as the container runtime parses it (distribution/reference's grammar):
`[registry[:port]/]path[:tag][@digest]`, lowercase path components. What `validate` accepts, the
node can pull; anything else would fail at spawn with InvalidImageName."""
QUANTITY_PATTERN = r"^[0-9]+(\.[0-9]+)?(m|k|Ki|M|Mi|G|Gi|T|Ti|P|Pi|E|Ei)?$"
HTTPS_PATTERN = r"^https://[^\s/?#]+[^\s]*$"
HTTP_PATTERN = r"^https?://[^\s/?#]+[^\s]*$"
ABS_PATH_PATTERN = r"^/[^\x00]*$"
NAME_PATTERN = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"
K8S_NAME = re.compile(NAME_PATTERN)
K8sName = Annotated[str, StringConstraints(pattern=NAME_PATTERN)]
"""A DNS-1123 label: usable as a Kubernetes object/volume name and a form field slug."""

HttpsUrl = Annotated[str, StringConstraints(pattern=HTTPS_PATTERN)]
HttpUrl = Annotated[str, StringConstraints(pattern=HTTP_PATTERN)]
AbsPath = Annotated[str, StringConstraints(pattern=ABS_PATH_PATTERN)]
"""An absolute path (inside the hub or the notebook container)."""

Quantity = Annotated[str, StringConstraints(pattern=QUANTITY_PATTERN)]
"""A Kubernetes resource quantity such as ``4Gi`` or ``500m``."""


class Toleration(Strict):
    """A Kubernetes toleration (the fields KubeSpawner passes through)."""

    key: NonEmptyStr | None = Field(None, description="Taint key.")
    operator: str = Field("Equal", pattern="^(Equal|Exists)$", description="`Equal` or `Exists`.")
    value: NonEmptyStr | None = Field(None, description="Taint value (with `Equal`).")
    effect: str | None = Field(
        None,
        pattern="^(NoSchedule|PreferNoSchedule|NoExecute)$",
        description="Taint effect; null matches all.",
    )


PATTERN_MEANINGS = {
    NAME_PATTERN: "must be a lowercase DNS label: a-z, 0-9 and '-', at most 63 characters",
    HTTPS_PATTERN: "must be an https:// URL",
    HTTP_PATTERN: "must be an http(s):// URL",
    ABS_PATH_PATTERN: "must be an absolute path",
    QUANTITY_PATTERN: "must be a Kubernetes quantity such as 10Gi or 500m",
    MEMORY_PATTERN: "must be a positive size such as 4G (K, M, G or T; binary units, 4G = 4 GiB)",
    IMAGE_REF_PATTERN: "must be an image reference such as datalake-hep, registry.example.org/team/img:2026.11 "
    "(lowercase path, optional :tag and @sha256:digest)",
}
"""Plain-language meaning of each pattern, for error messages admins can act on."""
