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
    "NAME_PATTERN",
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

NAME_PATTERN = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"
K8S_NAME = re.compile(NAME_PATTERN)
K8sName = Annotated[str, StringConstraints(pattern=NAME_PATTERN)]
"""A DNS-1123 label: usable as a Kubernetes object/volume name and a form field slug."""

HttpsUrl = Annotated[str, StringConstraints(pattern=r"^https://[^\s/?#]+[^\s]*$")]
HttpUrl = Annotated[str, StringConstraints(pattern=r"^https?://[^\s/?#]+[^\s]*$")]
AbsPath = Annotated[str, StringConstraints(pattern=r"^/[^\x00]*$")]
"""An absolute path (inside the hub or the notebook container)."""

Quantity = Annotated[str, StringConstraints(pattern=r"^[0-9]+(\.[0-9]+)?(m|k|Ki|M|Mi|G|Gi|T|Ti|P|Pi|E|Ei)?$")]
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
