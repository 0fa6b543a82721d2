"""Typed settings of the whole distribution (the chart's `datalake:` values block)."""

from .dask import DaskGatewaySettings, DaskLimits
from .iam import ClientSecretSource, GroupsClaim, IAMEndpoints, IAMSettings
from .model import Announcement, ProfilesSettings, Settings
from .rucio import RucioExtension, RucioInstance, RucioSettings, TokenExchange
from .spawner import GPUSettings, ImageSettings, SpawnerSettings, Toleration, startup_script_env
from .storage import CVMFSMount, EOSMount, HomeStorage, NFSShare, ScratchSpace, SharedVolume, StorageSettings

__all__ = [
    "Announcement",
    "CVMFSMount",
    "ClientSecretSource",
    "DaskGatewaySettings",
    "DaskLimits",
    "EOSMount",
    "GPUSettings",
    "GroupsClaim",
    "HomeStorage",
    "IAMEndpoints",
    "IAMSettings",
    "ImageSettings",
    "NFSShare",
    "ProfilesSettings",
    "RucioExtension",
    "RucioInstance",
    "RucioSettings",
    "ScratchSpace",
    "Settings",
    "SharedVolume",
    "SpawnerSettings",
    "StorageSettings",
    "TokenExchange",
    "Toleration",
    "startup_script_env",
]
