"""Scale-out: several API servers and worker processes behind HAProxy, on one machine or many.

- `topology`: which servers there are (from the settings, or named on the command line);
- `haproxy`: the HAProxy configuration Herald generates, and HAProxy's view of its servers;
- `processes`: detached processes with their pids and logs under `<data>/cluster/`;
- `supervisor`: `herald cluster up` / `down`;
- `status`: `herald status`, gathering every component's state and rendering it.
"""
