"""datalake-hub's configuration package, run inside the stock z2jh hub image."""
