"""`herald chaos`: the fault runs an operator would meet, rerun on demand, with what each one
lost, duplicated and answered with an error.

- `target.py`: what is put through them: a fresh local Herald (the bench's stack: `herald api`
  x2 and a `herald worker` as processes, SQLite or a scratch PostgreSQL database, the embedded
  or a given Redis), or a running deployment on this machine named by URL and admin token.
- `load.py`: steady email triggers, as a client behind a load balancer sends them.
- `faults.py`: the faults, each undone before it returns.
- `run.py`: one scenario after another, within a time bound, and the table they make.

Deliveries are counted twice over: by a real SMTP server (`herald.bench.sink`, which reads the
notification id out of each Message-ID) and by the notification records (`GET
/api/ops/dlq/email/{id}` answers for any email notification).
"""
