"""datalake-hub's configuration package, run inside the stock z2jh hub image.

Importing it first gives its modules a bytecode cache in the hub's data directory (the package
itself is mounted read-only, see ``_bytecode``), before any of them is imported.
"""

from hub_config import _bytecode

_bytecode.install(__name__)
