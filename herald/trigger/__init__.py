"""The notifications API: the generic trigger that creates notifications of any type for one or
many recipients (`service`), its endpoints (with the fast path of `POST /api/notifications`),
and one notification's whole record (`records`)."""
