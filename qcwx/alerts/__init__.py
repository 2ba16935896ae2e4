"""Alert outbox and delivery channels."""
