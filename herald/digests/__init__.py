"""Digests: a notification type's emails to one subscriber, held through a window (or until a
daily time in their time zone) and sent as one email per group key."""
