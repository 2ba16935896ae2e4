"""Report assembly and share links."""
