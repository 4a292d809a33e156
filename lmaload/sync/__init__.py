"""``lmaload sync``: lmaload plays the active LMA towards a standby under test and measures how
fast the standby ingests State Synchronization.

- ``plan`` — the stream of session records (creates, updates, deletes) as numpy columns;
- ``sender`` — the sans-IO active peer: HA-HELLO, SS-REPs open-loop or windowed with SS-ACKs and
  retransmissions, full sync on SS-REQ, SO-REQ answered in the old LMA's role;
- ``verify`` — the sans-IO sample check: failover PBUs (LMA Failure Indication) from the sessions'
  MAGs to the standby, and the PBAs that must come back with status 0 and the same prefix;
- ``report`` — the ``sync`` section of the results document and the summary table;
- ``metrics`` — the ``lmaload_sync_*`` Prometheus metrics;
- ``job`` — the driver: sockets, clock, the embedded standby, the phases of a run.
"""
