"""What the operator watches, read back from every process's telemetry: the one-second
aggregation across the cluster (`aggregator`), the summary's monitoring sections (`sections`),
the conditions that raise alerts (`conditions`), the dashboard's live Socket.IO namespace
(`live`), and their HTTP endpoints; `service.Monitoring` runs them in a process."""
