"""The spawn form: our compact, autoescaped form, rendered once per profile set and group set.

A mixin of :class:`hub_config.spawner.DatalakeSpawner` (it uses KubeSpawner's traits and
``_get_initialized_profile_list``); kept apart so the spawner module holds the spawn itself.
An operator's own ``profile_form_template`` or ``form.html`` is still rendered as KubeSpawner does.
"""

from __future__ import annotations

import functools
import weakref
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jinja2 import ChoiceLoader, Environment, FileSystemLoader, PackageLoader, Template

from .pages import TEMPLATES
from .profiles.kubespawner import profile_list_for
from .profiles.source import ProfileSource

__all__ = ["FORM_CACHE_SIZE", "SpawnForm"]


_FORM_ENVIRONMENTS: dict[tuple[str, ...], Environment] = {}
"""KubeSpawner's form environments by template path, shared by all spawners (see `_render_options_form`)."""


@functools.cache
def _datalake_form_environment() -> Environment:
    """Our spawn form's environment: autoescaped (admins' descriptions are text); it caches the compiled form."""
    return Environment(loader=FileSystemLoader(str(TEMPLATES)), autoescape=True, auto_reload=True)


def _form_environment(paths: tuple[str, ...]) -> Environment:
    env = _FORM_ENVIRONMENTS.get(paths)
    if env is None:
        loader = ChoiceLoader([FileSystemLoader(list(paths)), PackageLoader("kubespawner", "templates")])
        env = Environment(loader=loader)  # noqa: S701 - as KubeSpawner's: identical HTML (benchmarks check it)
        env.policies["json.dumps_kwargs"] = {"sort_keys": False}  # keep the admins' profile order, as KubeSpawner
        env = _FORM_ENVIRONMENTS.setdefault(paths, env)
    return env


class _FreshEntry(dict[str, Any]):
    """A profile_list entry built for one call only, so KubeSpawner need not deep-copy it.

    ``_get_initialized_profile_list`` deep-copies the whole list before filling in defaults, to
    protect a list shared through config; ours are built anew on every call (``profile_list_for``),
    and the copy was three quarters of a spawn-form render with 50 profiles.
    """

    def __deepcopy__(self, memo: dict[int, Any]) -> _FreshEntry:
        return self


FORM_CACHE_SIZE = 32
"""Rendered forms kept per profile source: one per distinct group set (a form is ~3 kB per profile)."""

_FORM_HTML: weakref.WeakKeyDictionary[ProfileSource, OrderedDict[tuple[object, ...], str]] = weakref.WeakKeyDictionary()


class SpawnForm:
    """The spawn form's part of the spawner (see the module docstring)."""

    datalake_profiles: Any
    profile_form_template: str
    additional_profile_form_template_paths: list[str]

    if TYPE_CHECKING:  # provided by DatalakeSpawner and KubeSpawner; stubs here would shadow them

        def _settings(self) -> Any: ...

        def user_groups(self) -> list[str]: ...

        def _get_initialized_profile_list(self, profile_list: list[dict[str, Any]]) -> list[dict[str, Any]]: ...

    async def datalake_profile_list(self) -> list[dict[str, Any]]:
        """The profile_list this user may see and use (KubeSpawner calls it for the form and at spawn)."""
        source: ProfileSource = self.datalake_profiles
        profiles = await source.refresh()
        return [_FreshEntry(e) for e in profile_list_for(profiles, self._settings(), self.user_groups())]

    async def _render_options_form_dynamically(self, current_spawner: Any) -> str:
        """The spawn form, rendered once per profile set and group set, not on every page view.

        The form is a pure function of the user's profile list, which depends only on the
        profiles in force (``ProfileSource.generation`` changes on every reload) and the user's
        groups; users with the same groups share one rendering. A reload or a group change makes
        a new key, so nobody is shown a stale form.
        """
        source: ProfileSource = self.datalake_profiles
        await source.refresh()  # pick up a profile edit first: it bumps the generation
        key = (source.generation, tuple(self.user_groups()), self.profile_form_template)
        cache = _FORM_HTML.setdefault(source, OrderedDict())
        html = cache.get(key)
        if html is None:
            html = self._render_options_form(await self.datalake_profile_list())
            cache[key] = html
            while len(cache) > FORM_CACHE_SIZE:
                cache.popitem(last=False)
        else:
            cache.move_to_end(key)
        return html

    def _render_options_form(self, profile_list: list[dict[str, Any]]) -> str:
        """Our compact form (templates/spawn_form.html), or KubeSpawner 7's where an operator set their own.

        An operator's ``profile_form_template`` or a ``form.html`` in
        ``additional_profile_form_template_paths`` is rendered as KubeSpawner would; without them,
        ours. Either way the compiled template is cached: KubeSpawner builds a new Jinja
        environment per call, parsing the template each time (about 30 ms for 50 profiles, see
        docs/performance.md), and ours is callable, so it renders per view. Jinja's auto_reload
        still picks up an edited file.
        """
        profile_list = self._get_initialized_profile_list(profile_list)
        paths = tuple(self.additional_profile_form_template_paths)
        if self.profile_form_template:
            template: Template = _form_environment(paths).from_string(self.profile_form_template)
        elif paths and any((Path(p) / "form.html").is_file() for p in paths):
            template = _form_environment(paths).get_template("form.html")
        else:
            template = _datalake_form_environment().get_template("spawn_form.html")
        html: str = template.render(profile_list=profile_list)
        return html

    def _options_from_form(self, formdata: dict[str, list[str]]) -> dict[str, Any]:
        """KubeSpawner's parsing, minus the free-value boxes left empty.

        Our form names every free-value box (it works without script), so an empty one arrives
        with each post; dropping it leaves the user options as KubeSpawner's own form sends them.
        """
        options: dict[str, Any] = super()._options_from_form(formdata)  # type: ignore[misc]
        return {k: v for k, v in options.items() if not (k.endswith("--unlisted-choice") and not v)}
