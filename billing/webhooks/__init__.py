"""Stripe events: dj-stripe's receiver queues each one, and the registry dispatches it to the
handlers registered for its type next to their services (`@on("invoice.paid")`)."""
