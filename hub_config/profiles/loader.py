"""Read profile files, validate each and the set together, against the settings they run under.

Everything wrong is collected before raising, so an admin fixing a profile sees all problems in
one `validate` run. Cross-file rules (unique slugs, one default) and references into settings
(mount names, Rucio instances) are checked here, where file and line are still known.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import ValidationError

from ..errors import ConfigError, Problem
from ..rucio.selection import instances_for, unknown_instances
from ..yamlsource import MAX_BYTES, Document, parse_yaml, problems_from_validation
from .model import Profile

if TYPE_CHECKING:
    from ..settings.model import Settings

__all__ = ["LoadedProfile", "check_profiles", "load_profile_text", "load_profiles", "profile_files"]

SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True)
class LoadedProfile:
    """A valid profile and where it came from (for messages about it)."""

    profile: Profile
    source: str
    doc: Document | None = None

    def problem(self, path: Sequence[str | int], message: str) -> Problem:
        """A problem located at ``path`` inside this profile's file."""
        if self.doc is not None:
            return self.doc.problem(path, message)
        from ..errors import format_path

        return Problem(self.source, None, format_path(path), message)


def profile_files(path: Path) -> list[Path]:
    """The profile files under ``path`` (a file or a directory, e.g. a mounted ConfigMap).

    Hidden entries are skipped: a mounted ConfigMap holds `..data` and timestamped dirs. Every
    other entry named like a profile is returned, even a directory or a dangling symlink, so the
    loader refuses it with its name instead of `validate` saying OK while the hub serves less.
    """
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.suffix in SUFFIXES and not p.name.startswith("."))
    return [path]


def _read_bounded(file: Path) -> bytes:
    """The file's bytes, reading at most one byte past the YAML reader's limit (it refuses the rest)."""
    if file.is_dir():
        raise IsADirectoryError(21, "is a directory, not a profile file")
    with file.open("rb") as fh:
        return fh.read(MAX_BYTES + 1)


def load_profile_text(text: str | bytes, source: str) -> LoadedProfile:
    """Parse and validate one profile document; raise :class:`ConfigError` with file:line problems."""
    doc = parse_yaml(text, source)
    if not isinstance(doc.data, dict):
        raise ConfigError([doc.problem((), "a profile file holds one mapping (slug, display_name, ...)")])
    try:
        profile = Profile.model_validate(doc.data)
    except ValidationError as err:
        raise ConfigError(problems_from_validation(err, doc)) from None
    return LoadedProfile(profile=profile, source=source, doc=doc)


def load_profiles(
    paths: Iterable[Path], settings: Settings | None = None, *, inline: Iterable[Profile] = ()
) -> list[LoadedProfile]:
    """Load every profile under ``paths`` plus ``inline`` ones; raise one error listing all problems."""
    roots = list(paths)
    loaded: list[LoadedProfile] = []
    problems: list[Problem] = []
    for root in roots:
        if not root.exists():
            problems.append(Problem(str(root), None, "", "no such file or directory"))
            continue
        for file in profile_files(root):
            try:
                raw = _read_bounded(file)
            except OSError as err:
                problems.append(Problem(str(file), None, "", f"cannot read: {err.strerror}"))
                continue
            try:
                loaded.append(load_profile_text(raw, str(file)))
            except ConfigError as err:
                problems.extend(err.problems)
    for i, profile in enumerate(inline):
        loaded.append(LoadedProfile(profile=profile, source=f"<settings profiles.inline[{i}]>"))
    if not loaded and not problems:
        where = ", ".join(str(p) for p in roots) or "<settings profiles.inline>"
        problems.append(Problem(where, None, "", "no profiles: every user would be offered no server"))
    problems.extend(check_profiles(loaded, settings))
    if problems:
        raise ConfigError(problems)
    return sorted(loaded, key=lambda lp: (lp.profile.order, lp.profile.slug))


def check_profiles(loaded: Sequence[LoadedProfile], settings: Settings | None) -> list[Problem]:
    """Rules across profiles and against settings."""
    problems: list[Problem] = []
    seen: dict[str, LoadedProfile] = {}
    defaults: list[LoadedProfile] = []
    for lp in loaded:
        p = lp.profile
        first = seen.get(p.slug)
        if first is not None:
            where = f"{first.source}:{first.doc.line_of(('slug',))}" if first.doc else first.source
            problems.append(lp.problem(("slug",), f"duplicate slug {p.slug!r}, already defined in {where}"))
        else:
            seen[p.slug] = lp
        if p.default:
            defaults.append(lp)
        if settings is not None:
            problems.extend(_check_references(lp, settings))
    if len(defaults) > 1:
        names = ", ".join(f"{d.profile.slug} ({d.source})" for d in defaults)
        for d in defaults[1:]:
            problems.append(d.problem(("default",), f"more than one profile is the default: {names}"))
    return problems


def _check_references(lp: LoadedProfile, settings: Settings) -> list[Problem]:
    p = lp.profile
    problems: list[Problem] = []
    known_mounts = settings.storage.mount_names
    for i, name in enumerate(p.mounts):
        if name not in known_mounts:
            problems.append(
                lp.problem(
                    ("mounts", i),
                    f"mount {name!r} is not defined in settings storage "
                    f"(known: {', '.join(sorted(known_mounts)) or 'none'})",
                )
            )
    problems.extend(_check_rucio(lp, settings))
    if p.has_gpu and not settings.spawner.gpu.resource_name:
        problems.append(lp.problem(("choices", "gpus"), "GPUs offered but spawner.gpu.resource_name is unset"))
    return problems


def _check_rucio(lp: LoadedProfile, settings: Settings) -> list[Problem]:
    """Unknown instance names, and replica mode without the RSE mount, for the instances the profile gets."""
    p = lp.profile
    problems: list[Problem] = []
    known = ", ".join(i.name for i in settings.rucio.instances) or "none"
    for i, name in unknown_instances(settings.rucio, p):
        problems.append(
            lp.problem(("rucio", "instances", i), f"Rucio instance {name!r} is not configured (known: {known})")
        )
    if p.rucio.mode != "replica":
        return problems
    for inst in instances_for(settings.rucio, p):
        rse_mount = inst.extension.rse_mount
        if rse_mount is None:
            message = f"replica mode, but instance {inst.name!r} defines no extension.rse_mount"
        elif rse_mount not in p.mounts:
            message = f"replica mode needs mount {rse_mount!r} (instance {inst.name!r}) in mounts"
        else:
            continue
        problems.append(lp.problem(("rucio", "mode"), message))
    return problems
