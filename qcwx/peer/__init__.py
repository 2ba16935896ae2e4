"""Inter-laboratory comparison (室间化比对) built from the labs' in-control IQC results.

``filters`` parses the peer-group filter stack and the period; ``units`` folds unit spellings
to one key (the unit is part of every group level); ``frames`` reads the per-system codes and
moments (judged, non-rejected runs only); ``compute`` turns them into group statistics at the
levels peer → method → all (pandas/numpy over ``qcwx.qcstats.peer``); ``queries`` (compared
rows, lab page), ``lot`` (QC-lot page), ``centre`` (matrix, NCCL) and ``exceptions`` (the
centre's exception report) read, scoped and anonymised; ``services`` writes (the daily-moments
cache, frozen monthly snapshots, saved groupings); ``views`` is the blueprint.
"""
