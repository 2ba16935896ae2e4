"""Cause localisation of bias shifts and data-integrity signals (issue 15)."""
