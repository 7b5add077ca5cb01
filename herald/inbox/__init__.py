"""A user's in-app notifications: the backlog a socket catches up on, acknowledgements and read
state (`service`), and the inbox over HTTP (`endpoints`)."""
