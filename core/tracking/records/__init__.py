"""What is written about a run: its params, tags, metric names, description, datasets, pictures,
files and model, and a sweep's summary.

Each module turns something of the run (its config, its network, its history) into what MLflow
stores and a reviewer reads: ``params``, ``tags``, ``naming`` (run names), ``metric_names`` (the
article's notation and the row layout), ``description``, ``summary`` (final numbers, a sweep's best
child), ``datasets``, ``images``, ``artifacts``, ``trace``, ``model`` with ``served_model`` (the
file MLflow runs to load it).

Records use the transport below them (the store's environment, a URI's redaction, MLflow's
limits) and never the run's life above them (``lifecycle``), so the same record is written alike
by a live run, a sweep's parent and ``backproplab runs`` repairing a run after the fact.
"""
