"""Ray actors: thin shells that put the core's engines on cluster workers and keep them busy."""
