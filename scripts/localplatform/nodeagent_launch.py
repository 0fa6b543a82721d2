"""Start one pod's process inside its own mount namespace (helper of :mod:`localplatform.nodeagent`).

The node agent runs ``unshare -m --propagation private -- python nodeagent_launch.py SPEC``. Here,
still root but in a private mount namespace, we build the pod's view of the filesystem and then
become the pod's user and ``exec`` its command, so the PID the agent recorded *is* the pod's
process. Nothing done here is visible on the host: the namespace and its mounts vanish with the
last process in it.

The view, in order:

1. "Image" paths (the session venv and the Python it was built from) stay reachable for the pod's
   user: if an ancestor is closed to others (``/root`` is 0700) a tmpfs covers that ancestor and
   only the image paths are bind-mounted back (read-only), so the pod does not see root's home.
2. A private ``/tmp`` (1777) and the image's ``/home/jovyan`` (owned by the pod user) like a
   container's writable layer, and a kubelet-style ``/etc/hosts``.
3. The pod's volumes at their ``mountPath``, shallowest first, read-only where asked.

0. A root of the pod's own: a tmpfs holding bind mounts of the host's top-level entries, made the
   namespace's root with ``pivot_root`` (so ``nsenter --mount`` lands in it too). Top-level mount
   points a pod creates (``/eos``) live there, never on the host; and the storage roots in
   :data:`POD_ONLY_ROOTS` are left out unless the pod mounts something there: a profile without the
   EOS mount has no ``/eos`` at all, even on a machine whose host has one.

A mount point that does not exist is created without touching the host: at the top level, in the
pod's root; deeper, the nearest existing ancestor gets an overlayfs whose upper layer is in the
pod's directory; inside a directory that is itself one of the pod's volumes it is simply created
there (as a container runtime would).

Stdlib only and standalone on purpose: it runs before anything of the project is importable for
the pod user, and it must stay small enough to audit.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384
MNT_DETACH = 2
_SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 217}
"""``pivot_root``'s syscall number (glibc has no wrapper)."""
POD_ONLY_ROOTS = frozenset({"/eos", "/cvmfs"})
"""Storage roots that exist on a node only where the kubelet mounts them into a pod: a pod that
mounts nothing there does not see them, whatever the host has (an older agent created ``/eos``)."""

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    src = source.encode() if source is not None else None
    fs = fstype.encode() if fstype is not None else None
    opts = data.encode() if data is not None else None
    if _libc.mount(src, target.encode(), fs, ctypes.c_ulong(flags), opts) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {source} -> {target} ({fstype}): {os.strerror(err)}")


def _bind(source: str, target: str, read_only: bool) -> None:
    _mount(source, target, None, MS_BIND | MS_REC)
    if read_only:
        _mount(None, target, None, MS_REMOUNT | MS_BIND | MS_RDONLY)


def _umount(target: str) -> None:
    if _libc.umount2(target.encode(), MNT_DETACH) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"umount {target}: {os.strerror(err)}")


def _pivot_root(new_root: str) -> None:
    """Make ``new_root`` (a mount point) this namespace's root and drop the old one."""
    number = _SYS_PIVOT_ROOT.get(os.uname().machine)
    if number is None:
        raise OSError(f"pivot_root: unknown syscall number on {os.uname().machine}")
    os.chdir(new_root)
    if _libc.syscall(number, b".", b".") != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"pivot_root {new_root}: {os.strerror(err)}")
    _umount(".")  # the old root, stacked under the new one by pivot_root(".", ".")
    os.chdir("/")


def _mountpoints() -> list[str]:
    with open("/proc/self/mountinfo", encoding="utf-8") as fh:
        return [line.split()[4].replace("\\040", " ") for line in fh]


class View:
    """Builds the pod's mount namespace; remembers which directories belong to the pod."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.scratch = Path(spec["pod_dir"]) / "overlay"
        self.owned: list[str] = []
        self.overlays = 0
        self.scratch_fd: int | None = None

    def prepare_scratch(self) -> None:
        """A private tmpfs for overlay upper layers, reached by fd since later mounts may cover its path.

        On its own filesystem, an upper layer never overlaps the lower one it covers.
        """
        self.scratch.mkdir(parents=True, exist_ok=True)
        _mount("tmpfs", str(self.scratch), "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=4m")
        self.scratch_fd = os.open(self.scratch, os.O_PATH)

    def private_root(self) -> None:
        """Pivot into a tmpfs root holding the host's top-level entries (less unwanted storage roots)."""
        paths = [os.path.normpath(m[k]) for m in self.spec["mounts"] for k in ("target", "source")]
        wanted = {r for r in POD_ONLY_ROOTS if any(p == r or p.startswith(r + "/") for p in paths)}
        root = Path(self.spec["pod_dir"]) / "root"
        root.mkdir(exist_ok=True)
        _mount("tmpfs", str(root), "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=1m")
        for name in sorted(os.listdir("/")):
            src = "/" + name
            if src in POD_ONLY_ROOTS and src not in wanted:
                continue
            dst = root / name
            if os.path.islink(src):
                os.symlink(os.readlink(src), dst)
            elif os.path.isdir(src):
                dst.mkdir()
                _mount(src, str(dst), None, MS_BIND | MS_REC)
            elif os.path.exists(src):
                dst.touch()
                _mount(src, str(dst), None, MS_BIND)
        _pivot_root(str(root))
        # The recursive bind of the checkout's ancestor brought along a copy of the new root itself.
        if os.path.ismount(root):
            _umount(str(root))

    def _is_owned(self, path: str) -> bool:
        return any(path == o or path.startswith(o.rstrip("/") + "/") for o in self.owned)

    def ensure(self, target: str, is_dir: bool) -> None:
        """Make ``target`` exist as a mount point, without changing the host's filesystem."""
        if os.path.lexists(target):
            return
        ancestor = os.path.dirname(target)
        while not os.path.isdir(ancestor):
            ancestor = os.path.dirname(ancestor)
        if self._is_owned(ancestor):
            pass  # inside one of the pod's own volumes: create it there, as a runtime would
        elif ancestor == "/":
            pass  # the pod's own root (a tmpfs, see private_root), as in an image's rootfs
        else:
            self._overlay(ancestor)
        if is_dir:
            os.makedirs(target, exist_ok=True)
        else:
            os.makedirs(os.path.dirname(target), exist_ok=True)
            Path(target).touch()

    def _overlay(self, ancestor: str) -> None:
        """Cover ``ancestor`` with an overlay (upper layer on a private tmpfs) and re-bind its submounts."""
        prefix = ancestor.rstrip("/") + "/"
        below = sorted(m for m in _mountpoints() if m.startswith(prefix))
        topmost = [m for m in below if not any(m.startswith(o.rstrip("/") + "/") for o in below if o != m)]
        fds = {m: os.open(m, os.O_PATH) for m in topmost}
        if self.scratch_fd is None:
            raise OSError("overlay scratch space not prepared")
        self.overlays += 1
        layer = Path(f"/proc/self/fd/{self.scratch_fd}") / str(self.overlays)
        (layer / "upper").mkdir(parents=True)
        (layer / "work").mkdir(parents=True)
        opts = f"lowerdir={ancestor},upperdir={layer / 'upper'},workdir={layer / 'work'}"
        _mount("overlay", ancestor, "overlay", 0, opts)
        self.owned.append(ancestor)
        for mount, fd in fds.items():
            _mount(f"/proc/self/fd/{fd}", mount, None, MS_BIND | MS_REC)
            os.close(fd)

    def hide_closed_ancestors(self, image_paths: list[str]) -> None:
        """Keep image paths reachable for a non-root user without exposing closed dirs around them."""
        closed: dict[str, list[str]] = {}
        for path in image_paths:
            parts = Path(path).parts
            for i in range(2, len(parts)):
                anc = str(Path(*parts[:i]))
                if os.stat(anc).st_mode & 0o001 == 0:
                    closed.setdefault(anc, []).append(path)
                    break
        if not closed:
            return
        fds = {p: os.open(p, os.O_PATH) for paths in closed.values() for p in paths}
        for anc, paths in closed.items():
            _mount("tmpfs", anc, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=1m")
            for path in paths:
                os.makedirs(path, exist_ok=True)
                _bind(f"/proc/self/fd/{fds[path]}", path, read_only=True)
        for fd in fds.values():
            os.close(fd)

    def mount_all(self) -> None:
        """Bind every source at its target; sources are opened first so hiding cannot lose them."""
        mounts = sorted(self.spec["mounts"], key=lambda m: (m["target"].count("/"), m["target"]))
        self.private_root()  # first: a bind from a source opened in the old root would be refused
        fds = [os.open(m["source"], os.O_PATH) for m in mounts]
        self.prepare_scratch()
        self.hide_closed_ancestors(self.spec.get("image_paths", []))
        for mount, fd in zip(mounts, fds, strict=True):
            target = os.path.normpath(mount["target"])
            self.ensure(target, mount.get("is_dir", True))
            _bind(f"/proc/self/fd/{fd}", target, bool(mount.get("read_only")))
            if mount.get("is_dir", True):
                self.owned.append(target)
            os.close(fd)


def _drop_privileges(spec: dict[str, Any]) -> None:
    """Become the pod's user; the agent has already worked out uid, gid and groups."""
    os.setgroups(sorted({int(g) for g in spec.get("groups", [])}))
    os.setgid(int(spec["gid"]))
    os.setuid(int(spec["uid"]))


def main(argv: list[str]) -> int:
    """Read the spec, build the view, drop privileges, exec the command."""
    spec_path = Path(argv[1])
    spec: dict[str, Any] = json.loads(spec_path.read_text())
    View(spec).mount_all()
    env: dict[str, str] = spec["env"]
    command: list[str] = spec["argv"]
    exe = command[0]
    if "/" not in exe:
        found = shutil.which(exe, path=env.get("PATH", os.defpath))
        if not found:
            sys.stderr.write(f"nodeagent: executable {exe!r} not found on PATH {env.get('PATH')}\n")
            return 127
        exe = found
    _drop_privileges(spec)
    cwd = spec.get("cwd") or "/"
    try:
        os.chdir(cwd)
    except OSError as err:
        sys.stderr.write(f"nodeagent: cannot chdir to {cwd}: {err}\n")
        return 126
    sys.stderr.flush()
    os.execve(exe, command, env)  # noqa: S606 - the pod's own command, as the kubelet would
    return 127  # not reached


if __name__ == "__main__":
    sys.exit(main(sys.argv))
