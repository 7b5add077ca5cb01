"""Telemetry: stage events that follow one request through Herald, metrics per component, and
the live view that streams both to the operations dashboard.

- `stages`: one stage event per step (load balancer, server, database, queue, worker, channel,
  ack), kept in Redis under the request's telemetry id so any process can append and any API
  server can read the timeline;
- `window` and `metrics`: Prometheus metrics (a registry per process) and a rolling window of
  one-second bins that gives rates and percentiles for the JSON summary and the live view;
- `aggregator`: the one-second loop that shares each process's window through Redis and, in API
  servers, streams the cluster's aggregate to the `/admin` Socket.IO namespace (`live`).
"""
