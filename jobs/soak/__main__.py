"""``python -m jobs.soak``: the soak's command line."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from jobs.soak import __doc__ as DOC
from jobs.soak.config import SoakConfig
from jobs.soak.report import print_table
from jobs.soak.run import run_soak


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jobs.soak", description=(DOC or "").split("\n")[0])
    defaults = SoakConfig()
    parser.add_argument("--jobs", type=int, default=defaults.jobs, help="good jobs to send")
    parser.add_argument("--workers", type=int, default=defaults.workers, help="simulated Whisper workers")
    parser.add_argument("--spares", type=int, default=defaults.spares, help="warm standby workers beside the "
                        "pool (0: none; a killed worker is then replaced by a new process)")
    parser.add_argument("--inflight", type=int, default=defaults.inflight, help="jobs each worker holds "
                        "(RAYSCRIBE_MAX_INFLIGHT_PER_WORKER)")
    parser.add_argument("--prefetch", type=int, default=defaults.prefetch, help="inputs read ahead per worker "
                        "(RAYSCRIBE_PREFETCH_PER_WORKER)")
    parser.add_argument("--probe", type=float, default=defaults.probe, help="seconds a worker may not answer "
                        "a liveness probe before it is taken for lost (RAYSCRIBE_WORKER_PROBE_SECONDS; 0: off)")
    parser.add_argument("--nodes", type=int, default=defaults.nodes, help="worker nodes (one may be killed)")
    parser.add_argument("--speed", type=float, default=defaults.speed, help="simulated speed (x real time)")
    parser.add_argument("--actor-kills", type=int, default=defaults.actor_kills)
    parser.add_argument("--no-node-kill", dest="node_kill", action="store_false")
    parser.add_argument("--outage-seconds", type=float, default=defaults.outage_seconds, help="0: no outage")
    parser.add_argument("--malformed", type=int, default=defaults.malformed)
    parser.add_argument("--corrupt", type=int, default=defaults.corrupt)
    parser.add_argument("--backlog", type=int, default=defaults.backlog, help="visible messages kept waiting "
                        "(0: workers x 2)")
    parser.add_argument("--visibility", type=int, default=defaults.visibility, help="SQS lease in seconds (jobs "
                        "caught by the outage come back after it)")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--timeout", type=float, default=defaults.timeout, help="seconds; 0: from the ideal time")
    parser.add_argument("--json", dest="json_path", type=Path, default=defaults.json_path)
    parser.add_argument("--keep", action="store_true", help="keep the work folder (Ray logs, moto log)")
    parser.add_argument("--verbose", action="store_true", help="show the workers' log lines")
    args = parser.parse_args(argv)
    config = SoakConfig(**vars(args))
    if config.jobs < 1 or config.workers < 1 or config.nodes < (2 if config.node_kill else 1):
        parser.error("--jobs and --workers must be >= 1, and --nodes >= 2 when a node is killed")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("botocore").setLevel(logging.ERROR)
    results = run_soak(config)
    config.json_path.parent.mkdir(parents=True, exist_ok=True)
    config.json_path.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print_table(results)
    return 0 if results["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
