"""Subscriptions, plans and entitlements arrive here with the catalog."""
