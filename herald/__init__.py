"""Herald: a self-hostable, distributed, real-time notification backend."""

__version__ = "0.1.0"
