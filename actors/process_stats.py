"""What a worker actor reports about its own process (memory), for the benchmarks and the monitoring; plain
Python, shared by the Whisper and Voxtral workers."""

from __future__ import annotations


def process_memory() -> dict[str, int]:
    """This process's resident memory (bytes, from /proc; 0 where unavailable) and its peak."""
    found = {"rss_bytes": 0, "peak_rss_bytes": 0}
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    key = "rss_bytes" if line.startswith("VmRSS") else "peak_rss_bytes"
                    found[key] = int(line.split()[1]) * 1024
    except OSError:
        pass
    return found
