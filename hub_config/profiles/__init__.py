"""Server options as YAML files: :mod:`.model` (the profile model), :mod:`.loader` (loading with
file:line errors), :mod:`.kubespawner` (KubeSpawner's profile_list), :mod:`.source` (hot reload).

Nothing is re-exported here: `settings.model` imports `profiles.model` (settings may hold inline
profiles), and an eager package init would pull the loader and the Rucio modules into that import.
"""
