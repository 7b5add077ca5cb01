"""Purchases and the receipts they send."""
