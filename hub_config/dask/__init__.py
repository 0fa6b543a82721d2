"""Dask Gateway: the hub's side (service, notebook env, limits table) and the per-group limits."""
