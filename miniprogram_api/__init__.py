"""The mini-program's JSON API (``/api/mp/v1``): JWT after code2session, scoped like the site."""
