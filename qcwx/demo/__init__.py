"""A deterministic demo city (示范市, two districts) to try qcwx: ``flask --app wsgi seed-demo``.

:func:`qcwx.demo.seed.seed` builds hospitals, labs, users, the catalogue, test systems,
control limits and daily QC results with injected shifts, trends, outliers and one biased
lab; :data:`qcwx.demo.seed.INJECTED` says what was injected where.
"""
