"""Server options as YAML files: models, loading with file:line errors, KubeSpawner conversion."""

from .kubespawner import describe_profile, image_ref, profile_list_for, to_profile_entry, user_may_use
from .loader import LoadedProfile, check_profiles, load_profile_text, load_profiles, profile_files
from .model import Choices, Profile, ProfileRucio, Resources

__all__ = [
    "Choices",
    "LoadedProfile",
    "Profile",
    "ProfileRucio",
    "Resources",
    "check_profiles",
    "describe_profile",
    "image_ref",
    "load_profile_text",
    "load_profiles",
    "profile_files",
    "profile_list_for",
    "to_profile_entry",
    "user_may_use",
]
