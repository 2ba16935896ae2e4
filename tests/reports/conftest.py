"""Report tests: ``app``, ``session``, ``world`` and ``login`` come from ``tests/fixtures``
(through ``tests/conftest.py``); each test module builds its own data with
``tests.factories`` and the real IQC services."""
