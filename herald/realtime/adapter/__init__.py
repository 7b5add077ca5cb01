"""Everything Herald does to python-socketio and python-engineio beyond their public API.

Herald's sockets depend on a few of the libraries' internals (there is no public way to do what
these modules do); they are kept here, and only here, each with a test that fails when the
library changes under it (tests/architecture/test_imports.py checks that no other module uses a
library's underscore attribute):

- `lean_socket`: a leaner Engine.IO socket and WebSocket driver (fewer tasks per idle socket);
- `rooms`: python-socketio's room bookkeeping without a scan of every room per disconnect;
- `manager`: the Redis manager, resubscribing at once after an outage, telling the server when
  a connection is confirmed, and the pub/sub message of an emit to one socket;
- `server`: the server's open sockets (count, close all) and its Redis listener (start before
  serving, stop with the process).
"""
