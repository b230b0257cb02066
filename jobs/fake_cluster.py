"""A fake autoscaling cluster to try the ways in by hand, as on a fresh ``ray up`` cluster: a head with no GPU
and a GPU node type at 0 running, whose autoscaler (Ray's ``fake_multinode`` provider) starts fake GPU nodes on
this machine when work asks for GPUs.

    python -m jobs.fake_cluster [--gpu-nodes 2] [--node-cpus 2]

prints the address and the environment to use, e.g.

    RAYSCRIBE_AUTOSCALING_CONFIG=... rayscribe transcribe samples/ --out /tmp/out --address 127.0.0.1:PORT

and runs until Ctrl-C, then stops only this cluster's processes. The fake nodes have no CUDA: the workers hold
their GPU share and compute on CPU (docs/cluster.md, "How GPU demand works").
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Sequence

from jobs.harness.env import apply_offline_env
from jobs.harness.fake_autoscaling import FakeAutoscalingCluster


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jobs.fake_cluster", description=__doc__.splitlines()[0])
    parser.add_argument("--gpu-nodes", type=int, default=2, help="Most fake GPU nodes the autoscaler may start.")
    parser.add_argument("--node-cpus", type=int, default=2, help="CPUs of each fake GPU node (1 GPU each).")
    parser.add_argument("--head-cpus", type=int, default=2, help="CPUs of the head (no GPU).")
    args = parser.parse_args(argv)
    apply_offline_env()
    cluster = FakeAutoscalingCluster(head_cpus=args.head_cpus, node_resources={"CPU": args.node_cpus},
                                     max_gpu_nodes=args.gpu_nodes, idle_timeout_minutes=1.0, dashboard=True,
                                     ports_ahead=True)
    seconds = cluster.start()
    print(f"fake autoscaling cluster up in {seconds:.0f} s\n  address:   {cluster.address}\n"
          f"  dashboard: {cluster.dashboard_url}\n  export RAYSCRIBE_AUTOSCALING_CONFIG={cluster.config_path}\n"
          "Ctrl-C stops it.", flush=True)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        stop.wait()
    finally:
        cluster.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
