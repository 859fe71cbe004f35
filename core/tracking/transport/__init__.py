"""How a run's records reach the store, and what keeps every write whole.

Finding and checking the store before anything trains (``reachability``, ``schema``, ``store``),
the secrets in its URI (``credentials``), the blocks of metrics and their writers (``buffer``: the
``log_batch`` sink and the batch writer; ``sql_writer``, straight into a sqlite or PostgreSQL
store's tables; ``upload``, several calls in flight to a tracking server; ``server_app``, the
server side of one call per block), a server lost mid-run (``spool``), store failures by their
plain name (``faults``), signals held while a write must not be cut in half (``signals``), and
MLflow's length limits (``limits``).

Everything here moves rows, tags and files without knowing what they mean: no metric name, no
config, no run's story. That is why it imports neither ``records`` nor ``lifecycle`` (a contract
in pyproject.toml), so a writer can be changed, benchmarked and tested on bare blocks.
"""
