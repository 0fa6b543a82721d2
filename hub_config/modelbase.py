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
    "K8S_NAME",
    "MEMORY_PATTERN",
    "NAME_PATTERN",
    "PATTERN_MEANINGS",
    "AbsPath",
    "HttpUrl",
    "HttpsUrl",
    "K8sName",
    "NonEmptyStr",
    "Quantity",
    "Strict",
    "Toleration",
]


class Strict(BaseModel):
    """Base of every settings/profile model: unknown keys rejected, immutable, documented."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=False)


NonEmptyStr = Annotated[str, StringConstraints(min_length=1)]
"""A string that is set. ``""`` never means "unset" here; use null (None)."""

MEMORY_PATTERN = r"^[0-9]+(\.[0-9]+)?[KMGT]$"
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
    MEMORY_PATTERN: "must be a size such as 4G (K, M, G or T; binary units, 4G = 4 GiB)",
}
"""Plain-language meaning of each pattern, for error messages admins can act on."""
