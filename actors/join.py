"""Checking a Ray cluster address before ``ray.init`` joins it, so a wrong address fails fast and quietly.

``ray.init(address=...)`` on an address where no Ray cluster answers waits for minutes and prints Ray's C++
connection warnings every few seconds. :func:`check_address` asks the GCS itself first, from Python, within a
bound (``RAYSCRIBE_RAY_CONNECT_TIMEOUT``): a TCP connection, then the GCS's own ``GetClusterId`` gRPC call. A
closed port, a host that does not answer, or a server that is not a Ray GCS (the dashboard's port 8265, say)
becomes one :class:`ClusterUnreachable` line naming the address and what to check.
"""

from __future__ import annotations

import socket
import time

from rayscribe.errors import RayscribeError

DEFAULT_GCS_PORT = 6379


class ClusterUnreachable(RayscribeError, ConnectionError):
    """No Ray cluster answers at the address given; the message names it and what to check."""


def resolve(address: str) -> str:
    """``auto`` (or ``RAY_ADDRESS``) turned into the ``host:port`` of a running local cluster, as Ray resolves it;
    other addresses as given."""
    if address != "auto":
        return address
    from ray._private.services import get_ray_address_from_environment

    try:
        resolved = get_ray_address_from_environment(address, None)
    except ConnectionError:
        raise ClusterUnreachable(
            "--address auto: no running Ray cluster found on this machine; start one with `ray start --head` "
            "(from this project's environment: .venv/bin/ray start --head), or pass the head's address "
            f"HOST:{DEFAULT_GCS_PORT}") from None
    return str(resolved)


def check_address(address: str, timeout: float) -> str:
    """The ``host:port`` to join once a Ray GCS has answered there within ``timeout`` seconds.

    Raises :class:`ClusterUnreachable` otherwise. A Ray Client address (``ray://``) gets the TCP check only;
    ``local`` (start a new local cluster) needs none."""
    if address == "local":
        return address
    shown = address
    target = resolve(address)
    if target.startswith(("http://", "https://")):
        raise ClusterUnreachable(
            f"cannot join {shown!r}: that is an HTTP address (the dashboard or job API, port 8265); --address "
            f"takes the head's GCS address HOST:{DEFAULT_GCS_PORT} (or 'auto' on the head itself)")
    client = target.startswith("ray://")
    host, port = _split(target.removeprefix("ray://"), shown, 10001 if client else DEFAULT_GCS_PORT)
    where = f"{shown!r}" + (f" (resolved to {target})" if target != shown else "")
    deadline = time.monotonic() + timeout
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except socket.gaierror as exc:
        raise ClusterUnreachable(f"cannot reach the Ray cluster at {where}: unknown host {host!r} ({exc.strerror}); "
                                 "check the head node's address") from None
    except TimeoutError:
        raise ClusterUnreachable(
            f"cannot reach the Ray cluster at {where}: no answer within {timeout:.0f} s; check the address, that "
            f"the head is up, and that a firewall or security group lets this machine reach port {port} "
            "(RAYSCRIBE_RAY_CONNECT_TIMEOUT lengthens the wait)") from None
    except OSError as exc:
        raise ClusterUnreachable(
            f"cannot reach the Ray cluster at {where}: {exc.strerror or exc} (nothing listens there); check the "
            f"address and port (the head's GCS port, {DEFAULT_GCS_PORT} by default: `ray status` on the head "
            "shows it) and that the cluster is up (`ray start --head`)") from None
    if not client:
        _ask_gcs(f"{host}:{port}", where, max(0.5, deadline - time.monotonic()))
    return target


def _split(address: str, shown: str, default_port: int) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep:
        return address, default_port
    try:
        return host.strip("[]"), int(port)
    except ValueError:
        raise ClusterUnreachable(f"cannot join {shown!r}: not an address; give HOST:PORT (e.g. 10.0.0.5:"
                                 f"{DEFAULT_GCS_PORT}) or 'auto'") from None


def _ask_gcs(target: str, where: str, timeout: float) -> None:
    """Call the GCS's ``GetClusterId``: an answer, or an authentication refusal (``ray.init`` brings the token),
    means a Ray GCS listens there."""
    import grpc
    from ray.core.generated import gcs_service_pb2, gcs_service_pb2_grpc

    with grpc.insecure_channel(target) as channel:
        stub = gcs_service_pb2_grpc.NodeInfoGcsServiceStub(channel)
        try:
            stub.GetClusterId(gcs_service_pb2.GetClusterIdRequest(), timeout=timeout)  # type: ignore[attr-defined]
            return
        except grpc.RpcError as exc:
            code = exc.code() if hasattr(exc, "code") else None
    if code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
        return
    what = (f"the port accepts connections, but no Ray GCS answered within {timeout:.0f} s"
            if code == grpc.StatusCode.DEADLINE_EXCEEDED
            else "the port accepts connections, but what answers there is not a Ray GCS")
    raise ClusterUnreachable(f"cannot join the Ray cluster at {where}: {what} (the dashboard's 8265 or "
                             f"another service?); pass the head's GCS address HOST:{DEFAULT_GCS_PORT} (`ray status` "
                             "on the head shows it)")
