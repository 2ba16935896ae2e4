#!/usr/bin/env python3
"""qcwx interface program: watch a folder on the LIS PC and send QC exports to qcwx.

The LIS (or an analyser's host software) writes QC exports into a folder; this program
sends each finished file to the qcwx lab-interface API and files it under ``sent/``.
Nothing is lost while the server or the network is down:

* a file is first *moved* into the spool (``.qcwx/spool/``, atomic), so the LIS may reuse
  the name at once; a journal (``.qcwx/journal.sqlite3``) records each spooled file and its
  state, and the program resumes from it after a crash or a reboot;
* sending is strictly first-in first-out (QC runs must arrive in time order). Each file gets
  a bounded pass (``--attempts``): busy answers (429/503 …, after ``Retry-After``), lost
  connections and items the server marks ``retryable`` (not stored because another writer
  held the run) are sent again with capped exponential back-off and jitter — for a CSV only
  the rows still unsent, with the same content-derived client ids;
* what is still unsent after the pass keeps the file spooled and later files wait: items
  refused for another reason (an unmapped code, a conflicting value) are logged and tried
  again on a longer back-off, so a fixed mapping lets them through; after
  ``--item-retries`` passes the file moves to ``failed/`` with ``<name>.error.txt``;
* a file refused for good (HTTP 400/404/413/415: unreadable, too big) moves to ``failed/``;
* re-sending is always safe: qcwx stores each result once.

At exit the program logs every file left unsent and why, and exits with 3 if there is any.
The code lives in the ``qcwx_upload`` folder next to this file (copy both); Python 3.8+
standard library plus ``requests``; no qcwx code. See README.md.
"""

# ruff: noqa: E402  (the package folder goes on sys.path first)
from __future__ import annotations

import sys
from pathlib import Path

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:  # also when loaded by path (tests, a service wrapper)
    sys.path.insert(0, _HERE)

from qcwx_upload import __version__
from qcwx_upload.cli import EXIT_UNSENT, main, parse_args, setup_logging, single_instance
from qcwx_upload.delivery import Delivery, Policy, deliver
from qcwx_upload.files import (
    EXTENSIONS,
    file_digest,
    kind_of,
    row_subsettable,
    unique_target,
    without_rows,
)
from qcwx_upload.journal import SCHEMA, Journal
from qcwx_upload.transport import API_PATH, RETRY_STATUSES, retry_after
from qcwx_upload.uploader import STATE_DIR, Config, Uploader

__all__ = ["API_PATH", "SCHEMA", "Config", "Delivery", "EXIT_UNSENT", "EXTENSIONS", "Journal",
           "Policy", "RETRY_STATUSES", "STATE_DIR", "Uploader", "__version__", "deliver",
           "file_digest", "kind_of", "main", "parse_args", "retry_after", "row_subsettable",
           "setup_logging", "single_instance", "unique_target", "without_rows"]

if __name__ == "__main__":
    sys.exit(main())
