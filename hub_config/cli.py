"""`python -m hub_config`: the admin's tools — validate, schema, preview.

Admins run `validate` before applying a profile change; `preview` answers "what would this user
see and get"; `schema` regenerates the chart's values schema. Errors are one line per problem
(`file:line: key: message`), never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from .errors import MAX_PROBLEMS, ChoiceError, ConfigError, Problem
from .profiles.kubespawner import profile_list_for, resolve_overrides
from .profiles.loader import LoadedProfile, load_profiles
from .schema import render_chart_schema, settings_schema
from .settings.model import Settings
from .yamlsource import parse_yaml, problems_from_validation

__all__ = ["main"]

SETTINGS_ENV = "DATALAKE_SETTINGS"


def _load_settings(args: argparse.Namespace) -> Settings | None:
    """Settings from --settings, --values (its `datalake:` block) or $DATALAKE_SETTINGS, if any."""
    if getattr(args, "values", None):
        doc = parse_yaml(Path(args.values).read_bytes(), args.values)
        block = doc.data.get("datalake") if isinstance(doc.data, dict) else None
        if not isinstance(block, dict):
            raise ConfigError([doc.problem(("datalake",), "no `datalake:` mapping in this values file")])
        try:
            return Settings.model_validate(block)
        except ValidationError as err:
            raise ConfigError(problems_from_validation(err, doc, prefix=("datalake",))) from None
    path = args.settings or os.environ.get(SETTINGS_ENV)
    return Settings.from_file(path) if path else None


def _load(args: argparse.Namespace) -> tuple[Settings | None, list[LoadedProfile]]:
    settings = _load_settings(args)
    paths = [Path(p) for p in args.paths]
    if not paths and settings is not None and settings.profiles.directory:
        paths = [Path(settings.profiles.directory)]
    inline = settings.profiles.inline if settings is not None else []
    return settings, load_profiles(paths, settings, inline=inline)


def cmd_validate(args: argparse.Namespace) -> int:
    settings, loaded = _load(args)
    if settings is None:
        print(
            "note: no settings given (--settings, --values or $DATALAKE_SETTINGS): "
            "mount names and Rucio instances were not checked",
            file=sys.stderr,
        )
    print(f"OK: {len(loaded)} profile(s): {', '.join(lp.profile.slug for lp in loaded)}")
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    if args.chart is None:
        print(json.dumps(settings_schema(), indent=2, ensure_ascii=False))
        return 0
    target = Path(args.chart)
    text = render_chart_schema()
    if args.check:
        current = target.read_text() if target.exists() else ""
        if current != text:
            print(f"{target} is stale: run `make schema` and commit it", file=sys.stderr)
            return 1
        print(f"{target} is up to date")
        return 0
    target.write_text(text)
    print(f"wrote {target}")
    return 0


def _parse_options(pairs: Sequence[str], flag: str = "--option") -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"{flag} expects key=value, got {pair!r}")
        out[key] = value
    return out


def cmd_preview(args: argparse.Namespace) -> int:
    settings, loaded = _load(args)
    if settings is None:
        print("preview needs settings: give --settings, --values or $DATALAKE_SETTINGS", file=sys.stderr)
        return 2
    groups = [g for g in (args.groups or "").split(",") if g]
    entries = profile_list_for(loaded, settings, groups)
    report: dict[str, Any] = {
        "user": args.user,
        "groups": groups,
        "profiles": [
            {
                "slug": e["slug"],
                "display_name": e["display_name"],
                "default": e["default"],
                "description": e["description"],
                "choices": {
                    name: {
                        "options": list(opt.get("choices", {})),
                        "default": next((k for k, c in opt.get("choices", {}).items() if c.get("default")), None),
                        **({"free": opt["unlisted_choice"]["validation_regex"]} if "unlisted_choice" in opt else {}),
                    }
                    for name, opt in e.get("profile_options", {}).items()
                },
            }
            for e in entries
        ],
    }
    if settings.rucio.instances:
        from .preview import rucio_accounts, rucio_panel

        by_slug = {lp.profile.slug: lp.profile for lp in loaded}
        for shown in report["profiles"]:
            shown["rucio_panel"] = rucio_panel(settings, by_slug[shown["slug"]])

        claims: dict[str, Any] = {"preferred_username": args.user, **_parse_options(args.claim, flag="--claim")}
        report["rucio_accounts"] = rucio_accounts(settings, username=args.user, claims=claims)
    if args.profile:
        options = {"profile": args.profile, **_parse_options(args.option)}
        try:
            report["kubespawner_override"] = resolve_overrides(entries, options)
            if args.pod:
                from .preview import pod_fragment

                report["pod"] = pod_fragment(settings, loaded, entries, options, username=args.user)
        except ChoiceError as err:
            print(f"refused: {err}", file=sys.stderr)
            return 1
    yaml.safe_dump(report, sys.stdout, sort_keys=False, allow_unicode=True)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m hub_config", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    def add_sources(p: argparse.ArgumentParser) -> None:
        p.add_argument("paths", nargs="*", help="profile files or directories (default: settings' directory)")
        src = p.add_mutually_exclusive_group()
        src.add_argument("--settings", help="settings file (the `datalake:` block as YAML)")
        src.add_argument("--values", help="a chart values file; its `datalake:` block is used")

    v = sub.add_parser("validate", help="check profiles (and settings); exit 1 listing every problem")
    add_sources(v)
    v.set_defaults(func=cmd_validate)

    s = sub.add_parser("schema", help="print the settings JSON schema, or write the chart's values schema")
    s.add_argument("--chart", help="write the chart values schema to this file")
    s.add_argument("--check", action="store_true", help="with --chart: exit 1 if the file is stale")
    s.set_defaults(func=cmd_schema)

    p = sub.add_parser("preview", help="what a user with given groups sees, and what a choice sets")
    add_sources(p)
    p.add_argument("--user", required=True, help="JupyterHub username")
    p.add_argument("--groups", default="", help="comma-separated IAM groups")
    p.add_argument("--profile", help="profile slug to resolve")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE", help="a choice, e.g. cores=4")
    p.add_argument("--pod", action="store_true", help="with --profile: also print the pod spec fragment")
    p.add_argument(
        "--claim",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an IAM claim of the user, for the Rucio account (e.g. rucio_account=dsmith, email=...); "
        "preferred_username defaults to --user",
    )
    p.set_defaults(func=cmd_preview)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        result: int = args.func(args)
    except ConfigError as err:
        for problem in err.problems[:MAX_PROBLEMS]:
            print(problem, file=sys.stderr)
        if len(err.problems) > MAX_PROBLEMS:
            print(f"... and {len(err.problems) - MAX_PROBLEMS} more", file=sys.stderr)
        print(f"{len(err.problems)} problem(s) found", file=sys.stderr)
        return 1
    except OSError as err:
        print(Problem(str(err.filename or "?"), None, "", err.strerror or str(err)), file=sys.stderr)
        return 1
    return result
