"""Email templates an operator can change: per notification type and locale, stored in the
database over the built-ins, rendered with Jinja2's sandbox (`rendering.py` says the policy,
`store.py` which template an email gets and how a change reaches every process)."""
