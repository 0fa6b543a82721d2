"""A bytecode cache for this package, kept in the hub's data directory.

The chart mounts the package read-only from a ConfigMap, so Python can write no ``__pycache__``
next to it, and every hub start compiled all of it again: ~50 ms of CPU in the start-up that
decides how long users wait after a restart (docs/performance.md), on top of everything the stock
hub does, whose code comes with its ``.pyc`` files from site-packages. This finder gives the
package's own modules a cache in a writable directory instead (the hub's working directory,
``/srv/jupyterhub``, the hub PVC with z2jh's default ``sqlite-pvc``), checked against a hash of the
source rather than its mtime: a ConfigMap update may keep sizes and mtimes, never the bytes.

Only this package is touched: ``sys.pycache_prefix`` would move every library's cache too.
Anything unusual (no writable directory, a bad or foreign cache file, ``PYTHONDONTWRITEBYTECODE``)
falls back to plain compiling; the cache can only save time, never change what runs.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import marshal
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from types import CodeType, ModuleType

ENV = "DATALAKE_BYTECODE_CACHE"
"""Where the cache lives; empty disables it. Default: ``.cache/hub_config`` in the working directory."""

_HEADER = len(importlib.util.MAGIC_NUMBER) + 8  # magic number, then the 8-byte source hash


class _CachedSourceLoader(importlib.machinery.SourceFileLoader):
    """A source loader whose bytecode lives in ``cache_dir``, keyed by module name."""

    cache_dir: Path

    def get_code(self, fullname: str) -> CodeType:
        source = self.get_data(self.path)
        key = importlib.util.MAGIC_NUMBER + importlib.util.source_hash(source)
        cached = self.cache_dir / f"{fullname}.{sys.implementation.cache_tag}.pyc"
        try:
            data = cached.read_bytes()
            if data[:_HEADER] == key:
                # Trusted as Python trusts __pycache__: only the hub's own user can write here
                # (cache_dir() refuses a directory anyone else could).
                code = marshal.loads(data[_HEADER:])  # noqa: S302
                if isinstance(code, CodeType):
                    return code
        except (OSError, ValueError, EOFError, TypeError):
            pass  # absent or unreadable: compile below
        code = self.source_to_code(source, self.path)
        try:
            tmp = cached.with_name(f"{cached.name}.{os.getpid()}.tmp")
            tmp.write_bytes(key + marshal.dumps(code))
            os.replace(tmp, cached)
        except OSError:
            pass  # a read-only or full disk costs the next start a compile, nothing more
        return code


class _Finder:
    """Finds this package's submodules as usual, then loads their source through the cache."""

    def __init__(self, package: str, cache_dir: Path) -> None:
        self._prefix = package + "."
        self._loader_class = type("CachedSourceLoader", (_CachedSourceLoader,), {"cache_dir": cache_dir})

    def find_spec(
        self, name: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if not name.startswith(self._prefix):
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path, target)
        if spec is not None and type(spec.loader) is importlib.machinery.SourceFileLoader:
            spec.loader = self._loader_class(spec.loader.name, spec.loader.path)
        return spec


def cache_dir() -> Path | None:
    """The cache directory, or None when caching is off, impossible, or the directory is not the
    hub user's alone (loading bytecode runs it, so only the hub may have written it)."""
    if sys.dont_write_bytecode:
        return None
    configured = os.environ.get(ENV)
    if configured == "":
        return None
    directory = Path(configured) if configured else Path.cwd() / ".cache" / "hub_config"
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = directory.stat()
    except OSError:
        return None
    private = st.st_uid == os.getuid() and not st.st_mode & 0o022
    return directory if private and os.access(directory, os.W_OK) else None


def install(package: str) -> None:
    """Put the finder first on ``sys.meta_path`` for ``package``'s submodules (once)."""
    if any(isinstance(f, _Finder) for f in sys.meta_path):
        return
    directory = cache_dir()
    if directory is not None:
        sys.meta_path.insert(0, _Finder(package, directory))
