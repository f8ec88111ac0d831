"""Everything billing says to Stripe that is not about one domain: the client, customers,
products and prices by stable key, one-time payments for the apps above billing, the webhook
endpoint. The bottom of billing: it imports nothing else of billing but models and selectors."""
