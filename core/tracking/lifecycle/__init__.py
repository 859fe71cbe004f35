"""A tracked run's life: started, fed, ended, interrupted, continued, repaired.

``run`` (``track_run``: one training run as one MLflow run, from store check to final status),
``callback`` (the trainer callback that buffers each iteration's row), ``extras`` (the pictures
and the model a run logs at its end), ``settings`` (the ``logger`` config node, checked before a
run starts), ``parent`` (a sweep's parent run as a job sees it), ``continuation`` and ``resume``
(a stopped run continued from its checkpoint), ``maintenance`` (``backproplab runs``: reap,
replay, register).

This is the one place that decides *when* something is written; it composes ``records`` (what)
and ``transport`` (how), which never import it back.
"""
