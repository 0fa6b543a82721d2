"""`python -m hub_config`: what an admin sees when validating, previewing and regenerating the schema."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT / "tests" / "data" / "settings" / "reference.yaml"


def run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """Run the CLI as an admin would, in a fresh interpreter."""
    return subprocess.run(
        [sys.executable, "-m", "hub_config", *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )


def test_validate_shipped_profiles_exit_0() -> None:
    """The shipped profiles are valid against the reference settings."""
    result = run("validate", "profiles/", "--settings", str(REFERENCE))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("OK: 8 profile(s): base, hep, hep-slim, datascience, devops, full, ska-sdc1, gpu")


def test_validate_without_settings_says_what_was_not_checked() -> None:
    """Without settings the references cannot be checked, and the admin is told so."""
    result = run("validate", "profiles/")
    assert result.returncode == 0
    assert "mount names and Rucio instances were not checked" in result.stderr


def test_validate_unknown_key_yaml_error_duplicate_slug(tmp_path: Path) -> None:
    """Three broken files (YAML error, duplicate slug, unknown key): exit 1, one line per problem with file:line, no traceback."""
    (tmp_path / "a.yaml").write_text("slug: a\ndisplay_name: A\ndescription: d\nimage: x\n")
    (tmp_path / "b.yaml").write_text("slug: b\ndisplay_name: [B\n")
    (tmp_path / "c.yaml").write_text("slug: a\ndisplay_name: C\ndescription: d\nimage: x\n")
    (tmp_path / "d.yaml").write_text("slug: d\ndisplay_name: D\ndescription: d\nimage: x\ncolour: red\n")
    result = run("validate", str(tmp_path))
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert f"{tmp_path}/d.yaml:5: colour: unknown key (check the spelling; see `python -m hub_config schema`)" in lines
    assert any(line.startswith(f"{tmp_path}/b.yaml:3: YAML syntax error") for line in lines)
    assert f"{tmp_path}/c.yaml:1: slug: duplicate slug 'a', already defined in {tmp_path}/a.yaml:1" in lines
    assert lines[-1] == "3 problem(s) found"
    assert "Traceback" not in result.stderr


def test_validate_unknown_mount_with_settings(tmp_path: Path) -> None:
    """A mount no storage entry defines is an error naming file:line when settings are given."""
    (tmp_path / "a.yaml").write_text("slug: a\ndisplay_name: A\ndescription: d\nimage: x\nmounts: [eos, tape]\n")
    result = run("validate", str(tmp_path), "--settings", str(REFERENCE))
    assert result.returncode == 1
    assert f"{tmp_path}/a.yaml:5: mounts[1]: mount 'tape' is not defined" in result.stderr


def test_validate_values_file_checks_the_datalake_block(tmp_path: Path) -> None:
    """Operators can validate a chart values file; errors carry the `datalake.` key path and line."""
    values = tmp_path / "site.yaml"
    values.write_text(
        "jupyterhub: {}\ndatalake:\n  iam:\n    issuer: https://iam/\n    client_id: hub\n    allow_all: true\n    colour: x\n"
    )
    result = run("validate", "profiles/", "--values", str(values))
    assert result.returncode == 1
    assert f"{values}:7: datalake.iam.colour: unknown key" in result.stderr


def test_validate_broken_settings_file(tmp_path: Path) -> None:
    """A broken settings file is reported with its line; the profiles are not blamed."""
    bad = tmp_path / "settings.yaml"
    bad.write_text("iam:\n  issuer: https://iam/\n  client_id: hub\n  allowed_groups: []\n")
    result = run("validate", "profiles/", "--settings", str(bad))
    assert result.returncode == 1
    assert f"{bad}:1: iam: allowed_groups is empty, so nobody could sign in" in result.stderr


def test_preview_lists_what_a_user_sees_and_gets() -> None:
    """A GPU-group member sees the GPU option; the chosen option's KubeSpawner overrides are printed."""
    result = run(
        "preview",
        "profiles",
        "--settings",
        str(REFERENCE),
        "--user",
        "alice",
        "--groups",
        "escape,escape/gpu",
        "--profile",
        "gpu",
        "--option",
        "gpus=2",
    )
    assert result.returncode == 0, result.stderr
    report = yaml.safe_load(result.stdout)
    assert [p["slug"] for p in report["profiles"]][-1] == "gpu"
    assert report["profiles"][0]["default"] is True
    assert report["kubespawner_override"]["extra_resource_limits"] == {"nvidia.com/gpu": "2"}


def test_preview_refuses_what_the_hub_refuses() -> None:
    """A user outside escape/gpu asking for the GPU profile is refused, as the hub would."""
    result = run(
        "preview", "profiles", "--settings", str(REFERENCE), "--user", "bob", "--groups", "escape", "--profile", "gpu"
    )
    assert result.returncode == 1
    assert "refused: profile 'gpu' is not offered" in result.stderr


def test_schema_prints_and_check_detects_staleness(tmp_path: Path) -> None:
    """`schema` prints the settings schema; `--check` fails on a stale file and passes on a fresh one."""
    printed = run("schema")
    assert printed.returncode == 0
    assert '"iam"' in printed.stdout
    stale = tmp_path / "values.schema.json"
    stale.write_text("{}\n")
    assert run("schema", "--chart", str(stale), "--check").returncode == 1
    assert run("schema", "--chart", str(stale)).returncode == 0
    assert run("schema", "--chart", str(stale), "--check").returncode == 0


def test_missing_path_is_a_clean_error(tmp_path: Path) -> None:
    """A typo in the path gives one line, not a traceback."""
    result = run("validate", str(tmp_path / "nope"))
    assert result.returncode == 1
    assert "no such file or directory" in result.stderr
    assert "Traceback" not in result.stderr


ESCAPE_VALUES = """\
datalake:
  iam: {issuer: "https://iam-escape.cern.ch/", client_id: hub, allowed_groups: [escape]}
  storage: {eos: [{name: eos}], scratch: [{name: scratch}], cvmfs: {name: cvmfs}}
  rucio:
    instances:
      - name: escape
        display_name: ESCAPE Rucio
        rucio_host: https://vre-rucio.cern.ch
        auth_host: https://vre-rucio-auth.cern.ch
        account_claim: rucio_account
        account_template: "{preferred_username}"
        account_transforms: [lowercase, {replace: {".": "_"}}, drop_invalid, truncate]
      - {name: lookup, display_name: Lookup, rucio_host: "https://r", auth_host: "https://r", account_lookup: true}
      - {name: strict, display_name: Strict, rucio_host: "https://r", auth_host: "https://r", account_claim: rucio_account}
"""


def test_preview_shows_the_rucio_account_and_its_route(tmp_path: Path) -> None:
    """dave.smith without the claim: transformed template, lookup at spawn, and why the claim-only one fails."""
    values = tmp_path / "site.yaml"
    values.write_text(ESCAPE_VALUES)
    result = run("preview", "profiles", "--values", str(values), "--user", "dave.smith")
    assert result.returncode == 0, result.stderr
    accounts = yaml.safe_load(result.stdout)["rucio_accounts"]
    skipped = "claim 'rucio_account': the user's claims have no (string) 'rucio_account' claim"
    assert accounts == {
        "escape": {"account": "dave_smith", "route": "template", "skipped": [skipped]},
        "lookup": {"account": "asked from Rucio at spawn", "route": "lookup"},
        "strict": {"account": None, "problem": f"Rucio instance 'strict': {skipped}"},
    }
    with_claim = run(
        "preview", "profiles", "--values", str(values), "--user", "dave.smith", "--claim", "rucio_account=dsmith"
    )
    accounts = yaml.safe_load(with_claim.stdout)["rucio_accounts"]
    assert accounts["escape"] == {"account": "dsmith", "route": "claim"}
    assert accounts["strict"] == {"account": "dsmith", "route": "claim"}


def test_validate_values_checks_the_account_rules(tmp_path: Path) -> None:
    """An unknown transform or template placeholder is one line with file:line and key path."""
    values = tmp_path / "site.yaml"
    values.write_text(ESCAPE_VALUES.replace("drop_invalid", "drop_bad"))
    result = run("validate", "profiles/", "--values", str(values))
    assert result.returncode == 1
    assert (
        f"{values}:12: datalake.rucio.instances[0].account_transforms: account_transforms[2]: "
        "unknown transform 'drop_bad'; known: lowercase, drop_invalid, truncate, {replace: {from: to}}"
    ) in result.stderr.splitlines()
    values.write_text(ESCAPE_VALUES.replace("{preferred_username}", "{preferred_name}"))
    result = run("validate", "profiles/", "--values", str(values))
    assert result.returncode == 1
    assert (
        "datalake.rucio.instances[0]: account_template uses unknown placeholder(s) ['preferred_name']" in result.stderr
    )
    values.write_text(ESCAPE_VALUES)
    assert run("validate", "profiles/", "--values", str(values)).returncode == 0
