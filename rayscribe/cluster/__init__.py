"""The cluster without Ray: rendering and checking ``cluster.yaml``, and the queue-driven scaling policy."""
