"""Signed webhooks: Herald's delivery events POSTed to the endpoints an application registers."""
