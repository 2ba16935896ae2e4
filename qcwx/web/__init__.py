"""Shared web pieces: home, health, error pages, template helpers."""
