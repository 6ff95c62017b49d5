"""Applying Clerk's truth: webhook events, compare-first from tokens, reconciliation."""
