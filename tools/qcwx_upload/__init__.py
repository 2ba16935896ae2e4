"""The qcwx interface program's parts; ``tools/qcwx_uploader.py`` is the entry point labs run.

Split by concern so each part stays small: ``journal`` (the spool's memory), ``files``
(what a file is and how to resend part of it), ``transport`` (one HTTP exchange and what
its answer means), ``delivery`` (retrying one file until its items are settled),
``uploader`` (intake, first-in first-out sending, filing) and ``cli`` (arguments, logging,
the single-instance lock, the exit code). Python 3.8+ standard library plus ``requests``;
nothing from qcwx, so a lab PC needs only this folder.
"""

__version__ = "1.1.0"
