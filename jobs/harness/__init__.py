"""The one test and benchmark harness: local Ray clusters, moto, the fault-injecting proxy, WAV inputs and clips.

The tests (through thin fixtures in ``tests/conftest.py``), the benchmarks and the soak all start what they need
from here, so each of these exists once:

- :mod:`jobs.harness.env`: the offline environment (no traffic beyond loopback) and fake AWS credentials;
- :mod:`jobs.harness.ports`: ``free_port``;
- :mod:`jobs.harness.processes`: finding and ending the processes one cluster started (never ``ray stop``);
- :mod:`jobs.harness.ray_cluster`: a ``ray start`` head, and an embedded ``ray.init`` cluster;
- :mod:`jobs.harness.fake_autoscaling`: a head whose autoscaler starts fake GPU nodes on this machine;
- :mod:`jobs.harness.multinode`: head + worker nodes as separate raylets (``ray.cluster_utils.Cluster``);
- :mod:`jobs.harness.moto`: ``moto_server`` on a free loopback port;
- :mod:`jobs.harness.faults`: the proxy in front of moto that injects errors, drops and outages;
- :mod:`jobs.harness.audio` and :mod:`jobs.harness.speech`: the WAV writer, the shared clips, WER.
"""
