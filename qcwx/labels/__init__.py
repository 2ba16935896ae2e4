"""QR labels stuck on analysers and QC fridges: signed tokens, printable sheets, scanning.

A label carries ``{BASE_URL}/s/<token>``; the token is signed so it cannot be forged or guessed,
and it names the test system's ``label_version`` so a supervisor can revoke printed labels by
regenerating them. Scanning (WeChat's scanner or a photo decoded on the server) lands on the
entry page with ``channel=scan``.
"""
