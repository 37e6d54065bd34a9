"""Advisory lock keys on PostgreSQL, one constant each, shared by every process.

``WRITE_LOCK`` is the one write lock: every write transaction takes it first
(``pg_advisory_xact_lock``), and so does the change-log trigger, which makes
versions visible in the order they were drawn (docs/postgresql.md, section 4.4).
Schema migrations take it too, so servers starting together migrate once.
"""

WRITE_LOCK = 4_624_963_772_813_310_001  # any bigint works if every process uses the same
