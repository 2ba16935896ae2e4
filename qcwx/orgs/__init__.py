"""Organisations, users, roles and the scope every query is built from."""
