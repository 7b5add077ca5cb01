"""`herald bench`: throughput, latency and memory of a whole local Herald, against its targets
and against the raw ceiling of the engines it is built on (BullMQ-Python, python-socketio).

Herald runs as it would in production (separate `herald api` and `herald worker` processes),
and every load generator runs in a process of its own, so the figures include real IPC and
the generators' CPU is measured and reported beside them.
"""
