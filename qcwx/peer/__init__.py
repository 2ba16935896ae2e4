"""Inter-laboratory comparison (室间化比对) built from the labs' in-control IQC results.

``filters`` parses the peer-group filter stack and the period; ``compute`` turns per-lab
moments into group statistics at the levels peer → method → all (pandas/numpy over
``qcwx.qcstats.peer``); ``queries`` reads (scoped, anonymised); ``services`` writes (the
daily-moments cache, frozen monthly snapshots, saved groupings); ``views`` is the blueprint.
"""
