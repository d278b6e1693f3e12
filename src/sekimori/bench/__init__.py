"""Benchmarks behind ``sekimori bench``: they run the real server and agent processes.

* ``sekimori bench ingest`` (:mod:`sekimori.bench.ingest`): events per second from
  agent outboxes to committed rows, beside the raw insert rate of the same rows.
* ``sekimori bench agent`` (:mod:`sekimori.bench.agent_idle`): the idle agent's
  resident memory and CPU, beside a bare interpreter's.

Results and how they were measured: ``docs/benchmarks.md``.
"""

__all__: list[str] = []
