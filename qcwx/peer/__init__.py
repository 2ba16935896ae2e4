"""Inter-laboratory comparison (室间化比对) built from the labs' in-control IQC results.

``filters`` parses the peer-group filter stack and the period; ``units`` folds unit spellings
to one key (the unit is part of every group level); ``compute`` turns per-system moments into
group statistics at the levels peer → method → all (pandas/numpy over ``qcwx.qcstats.peer``);
``queries`` is a package of the reads for pages, a module a page — ``queries`` itself
(compared rows, lab page), ``queries.labs`` (history), ``queries.lot`` (QC-lot page),
``queries.centre`` (matrix, NCCL), ``queries.exceptions`` (the centre's exception report) and
``queries.frames`` (per-system codes and moments) — scoped and anonymised; ``services``
writes (the daily-moments cache, frozen monthly snapshots, saved groupings); ``tasks`` are
their Celery wrappers; ``views`` is the blueprint.
"""
