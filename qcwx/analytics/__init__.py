"""Quality analytics built on the verified statistics of :mod:`qcwx.qcstats`.

* :mod:`.sigma` — TE, sigma and measurement uncertainty per test system × level (QC_SPEC §4),
  the lab's normalised method decision chart and the region's sigma distribution;
* :mod:`.design` — the Westgard Sigma Rules advisor (QC_SPEC §1.4) and its one-action apply;
* :mod:`.periods` and :mod:`.significance` — before/after comparison of two periods;
* :mod:`.comparison` — instrument comparison (WS/T 407, QC_SPEC §6), saved in :mod:`.models`.
"""
