"""Spawn-time and running-session hooks: Rucio credentials and their rotation."""

from .rotation import Rotator
from .rucio import Provisioned, RucioProvisioner

__all__ = ["Provisioned", "Rotator", "RucioProvisioner"]
