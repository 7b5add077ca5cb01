"""Subscribers' preferences, critical notification types, and one-click unsubscribe."""
