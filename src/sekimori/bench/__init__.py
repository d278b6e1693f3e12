"""Benchmarks behind ``sekimori bench``: they run the real server and agent processes.

* ``sekimori bench ingest`` (:mod:`sekimori.bench.ingest`): events per second from
  agent outboxes to committed rows, beside the raw insert rate of the same rows.
* ``sekimori bench agent`` (:mod:`sekimori.bench.agent_idle`): the idle agent's
  resident memory and CPU, beside a bare interpreter's.
* ``sekimori bench agent --workload`` (:mod:`sekimori.bench.agent_workload`): the
  same with every collector at work on a ~400-process desktop under a scripted
  workload (process churn, file operations, focus changes on Xvfb + openbox, page
  visits in Chromium), and a check that every event the workload produced reached
  the server.
* ``sekimori bench console`` (:mod:`sekimori.bench.console`): the web console's
  server time per page on a generated store of 20,000 PCs and 10 million events,
  beside a /healthz round trip and a raw count.

Results and how they were measured: ``docs/benchmarks.md``.
"""

__all__: list[str] = []
