"""A server option ("profile") as admins write it, one YAML file each.

The model is deliberately richer than KubeSpawner's `profile_list` dicts — group access, named
mounts, Rucio mode, the ETHZ-style resource form — and :mod:`hub_config.profiles.kubespawner`
turns it into those dicts.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, StringConstraints, field_validator, model_validator

from ..modelbase import IMAGE_REF_PATTERN, MEMORY_PATTERN, K8sName, NonEmptyStr, Strict, Toleration

__all__ = [
    "BYTE_UNITS",
    "WEB_APPS",
    "Choices",
    "FloatChoice",
    "ImageTagChoice",
    "IntChoice",
    "Memory",
    "MemoryChoice",
    "Profile",
    "ProfileRucio",
    "Resources",
    "WebApp",
    "memory_bytes",
]

BYTE_UNITS = {"K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}

Memory = Annotated[str, StringConstraints(pattern=MEMORY_PATTERN)]
"""Memory as JupyterHub reads it: binary units, `4G` is 4 GiB (`Gi` is not accepted by JupyterHub)."""

ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
RESERVED_ENV = re.compile(
    r"^(BEARER_TOKEN.*|RUCIO_.*|DATALAKE_.*|JUPYTERHUB_.*|JPY_.*|MEM_.*|CPU_.*|JUPYTER_CONFIG_PATH|JUPYTER_IMAGE.*)$"
)
"""Set by the hub or KubeSpawner (the Rucio config and token, JUPYTER_CONFIG_PATH for the Rucio panel,
the site name and start-up script, the server's API token and limits): a profile overriding one would
break sign-in or Rucio (BEARER_TOKEN* beats the token file), so it is refused, never silently lost."""


def _env_name(name: str) -> str:
    if not ENV_NAME.match(name):
        raise ValueError(f"{name!r} is not a valid variable name")
    if RESERVED_ENV.match(name):
        raise ValueError(f"{name} is set by the hub and cannot be overridden by a profile")
    return name


EnvName = Annotated[str, AfterValidator(_env_name)]


WebApp = Literal["code-server", "tensorboard", "rstudio"]
"""A web app an image offers beside JupyterLab, through jupyter-server-proxy (its server name there)."""

WEB_APPS: dict[str, str] = {"code-server": "VS Code", "tensorboard": "TensorBoard", "rstudio": "RStudio"}
"""What users call each web app (the launcher titles the images give them)."""


def memory_bytes(value: str) -> int:
    """`4G` → 4 GiB in bytes, as JupyterHub's ByteSpecification does."""
    return int(float(value[:-1]) * BYTE_UNITS[value[-1]])


class Resources(Strict):
    """Fixed resources of a profile (a choice in `choices` overrides the matching pair)."""

    cpu_guarantee: float | None = Field(None, gt=0, le=1024, description="CPU cores guaranteed (request).")
    cpu_limit: float | None = Field(None, gt=0, le=1024, description="CPU cores limit.")
    mem_guarantee: Memory | None = Field(None, description="Memory guaranteed, e.g. `4G`.")
    mem_limit: Memory | None = Field(None, description="Memory limit, e.g. `8G`.")
    gpus: int = Field(0, ge=0, le=16, description="GPUs every server of this profile gets.")

    @model_validator(mode="after")
    def _guarantee_within_limit(self) -> Resources:
        if self.cpu_guarantee and self.cpu_limit and self.cpu_guarantee > self.cpu_limit:
            raise ValueError(f"cpu_guarantee {self.cpu_guarantee} exceeds cpu_limit {self.cpu_limit}")
        if self.mem_guarantee and self.mem_limit and memory_bytes(self.mem_guarantee) > memory_bytes(self.mem_limit):
            raise ValueError(f"mem_guarantee {self.mem_guarantee} exceeds mem_limit {self.mem_limit}")
        return self


def _check_options(options: list[object], default: object) -> None:
    if len(set(map(str, options))) != len(options):
        raise ValueError("options must be distinct")
    if default is not None and default not in options:
        raise ValueError(f"default {default!r} is not one of the options {options}")


class FloatChoice(Strict):
    """A menu of CPU core counts."""

    options: list[Annotated[float, Field(gt=0, le=1024)]] = Field(min_length=1, description="Core counts offered.")
    default: float | None = Field(None, description="Preselected option; null means the first.")
    guarantee_fraction: float = Field(
        1.0, gt=0, le=1, description="Request this fraction of the chosen cores (limit = chosen)."
    )

    @model_validator(mode="after")
    def _default_listed(self) -> FloatChoice:
        _check_options(list(self.options), self.default)
        return self


class MemoryChoice(Strict):
    """A menu of memory sizes."""

    options: list[Memory] = Field(min_length=1, description="Sizes offered, e.g. `[4G, 8G, 16G]`.")
    default: Memory | None = Field(None, description="Preselected option; null means the first.")
    guarantee_fraction: float = Field(1.0, gt=0, le=1, description="Request this fraction of the chosen size.")

    @model_validator(mode="after")
    def _default_listed(self) -> MemoryChoice:
        _check_options(list(self.options), self.default)
        return self


class IntChoice(Strict):
    """A menu of whole numbers (GPUs, hours)."""

    options: list[Annotated[int, Field(ge=0, le=10_000)]] = Field(min_length=1, description="Values offered.")
    default: int | None = Field(None, description="Preselected option; null means the first.")

    @model_validator(mode="after")
    def _default_listed(self) -> IntChoice:
        _check_options(list(self.options), self.default)
        return self


class ImageTagChoice(Strict):
    """Let users pick the tag of the profile's image (listed tags, optionally a free one checked by a regex)."""

    options: list[NonEmptyStr] = Field(default_factory=list, description="Tags offered in the menu.")
    default: NonEmptyStr | None = Field(None, description="Preselected tag; null means the first option.")
    free_regex: NonEmptyStr | None = Field(
        None,
        description="Allow a typed tag matching this regex (anchored at both ends for you). Null: menu only.",
    )

    @model_validator(mode="after")
    def _valid(self) -> ImageTagChoice:
        if not self.options and self.free_regex is None:
            raise ValueError("give `options`, `free_regex` or both")
        _check_options(list(self.options), self.default)
        if self.free_regex is not None:
            try:
                re.compile(self.free_regex)
            except re.error as err:
                raise ValueError(f"free_regex does not compile: {err}") from None
        return self


class Choices(Strict):
    """What users choose on the spawn page (the ETHZ Euler form: cores, memory, GPUs, hours)."""

    cores: FloatChoice | None = Field(None, description="CPU cores.")
    memory: MemoryChoice | None = Field(None, description="Memory.")
    gpus: IntChoice | None = Field(None, description="GPUs (0 means none).")
    runtime_hours: IntChoice | None = Field(
        None, description="Maximum runtime; the server is stopped cleanly after this many hours."
    )
    image_tag: ImageTagChoice | None = Field(None, description="Image tag.")


class ProfileRucio(Strict):
    """Which Rucio instances a profile's servers get, and in which extension mode."""

    enabled: bool = Field(True, description="Give these servers Rucio config and tokens.")
    instances: list[K8sName] | None = Field(
        None,
        description="Instance names; null means all configured. An empty list is refused: "
        "use `enabled: false` for no Rucio.",
    )
    mode: Literal["download", "replica"] | None = Field(
        None,
        description="Extension mode; null means replica where the instance's RSE mount is in `mounts`, "
        "download otherwise.",
    )

    @field_validator("instances")
    @classmethod
    def _not_empty(cls, value: list[str] | None) -> list[str] | None:
        # `[]` read as "every instance" by one consumer and "none" by another; neither is obvious
        # to an admin, so it is refused with the spelling that says what they mean.
        if value is not None and not value:
            raise ValueError("an empty list is refused: use `enabled: false` for no Rucio (null: every instance)")
        return value


class Profile(Strict):
    """One server option users can pick."""

    slug: K8sName = Field(description="Stable identifier (URLs, API requests, form fields).")
    display_name: NonEmptyStr = Field(description="Title on the spawn page.")
    description: NonEmptyStr = Field(description="What the option is for, shown under the title.")
    image: Annotated[str, StringConstraints(pattern=IMAGE_REF_PATTERN, max_length=512)] = Field(
        description="Image. A bare name (`datalake-hep`) resolves to `<images.registry>/<name>:<images.tag>`."
    )
    default: bool = Field(False, description="Preselected option (at most one profile).")
    order: int = Field(100, description="Position on the spawn page (lower first; ties by slug).")
    groups: list[NonEmptyStr] = Field(
        default_factory=list, description="IAM groups that may use this option; empty means every user."
    )
    resources: Resources = Field(default_factory=lambda: Resources(), description="Fixed resources.")
    choices: Choices = Field(default_factory=lambda: Choices(), description="User choices.")
    mounts: list[K8sName] = Field(
        default_factory=list,
        description="Named storage mounts (see `storage`) these servers get besides home.",
    )
    rucio: ProfileRucio = Field(default_factory=lambda: ProfileRucio(), description="Rucio access.")
    web_apps: list[WebApp] = Field(
        default_factory=list,
        description="Web apps the image offers beside JupyterLab (its jupyter-server-proxy launcher entries): "
        "`code-server` (VS Code), `tensorboard`, `rstudio`. Listed on the spawn page, so list only what the "
        "image ships.",
    )
    env: dict[EnvName, str] = Field(default_factory=dict, description="Extra environment variables (no secrets).")
    node_selector: dict[str, str] = Field(default_factory=dict, description="Node labels required.")
    tolerations: list[Toleration] = Field(default_factory=list, description="Extra tolerations.")
    default_url: NonEmptyStr | None = Field(None, description="Landing URL; null uses the spawner default.")

    @model_validator(mode="after")
    def _env_and_mounts(self) -> Profile:
        if len(set(self.mounts)) != len(self.mounts):
            raise ValueError("mounts lists a name twice")
        if len(set(self.web_apps)) != len(self.web_apps):
            raise ValueError("web_apps lists an app twice")
        if self.resources.gpus and self.choices.gpus is not None:
            raise ValueError("set GPUs either in resources.gpus or as a choice, not both")
        return self

    @property
    def has_gpu(self) -> bool:
        """True when some server of this profile can get a GPU."""
        return self.resources.gpus > 0 or (
            self.choices.gpus is not None and any(n > 0 for n in self.choices.gpus.options)
        )
