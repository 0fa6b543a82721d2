"""The hub's Rucio credentials service: per-server Secrets from spawn to stop, kept fresh.

:mod:`.provisioner` exchanges tokens and writes a server's Secret, :mod:`.rotator` re-runs that
before the tokens expire, and :mod:`.server` is one server's lifecycle (spawn, owner reference,
rotation, stop), which the spawner calls. The pure pieces are in :mod:`hub_config.rucio`.
"""

from .provisioner import Provisioned, RucioProvisioner
from .rotator import Rotator
from .server import ServerRucio

__all__ = ["Provisioned", "Rotator", "RucioProvisioner", "ServerRucio"]
