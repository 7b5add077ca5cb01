"""How a channel says an attempt failed: worth retrying, or not."""


class DeliveryError(Exception):
    """An attempt failed for a reason that may pass: the ladder carries on."""


class PermanentDeliveryError(DeliveryError):
    """An attempt failed for a reason that will not pass (SMTP 5xx, malformed address):
    the notification goes to the dead-letter queue at once."""
