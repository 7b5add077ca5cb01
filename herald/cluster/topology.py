"""Which API servers make up a deployment, and where they listen."""

from __future__ import annotations

from dataclasses import dataclass

from herald.core.config import Settings


class ClusterError(Exception):
    """Something in the cluster cannot be done; the message is one line for the operator."""


@dataclass(frozen=True)
class Backend:
    """One API server as HAProxy sees it: its name is also its cookie value and its server id."""

    name: str
    host: str
    port: int

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}"


def server_ports(settings: Settings) -> list[int]:
    """The ports SERVER1_PORT, SERVER2_PORT and SERVER3_PORT name; a fourth server and
    beyond take the ports after SERVER3_PORT."""
    named = [settings.server1_port, settings.server2_port, settings.server3_port]
    extra = [settings.server3_port + i for i in range(1, max(0, settings.cluster_servers - 3) + 1)]
    return (named + extra)[: settings.cluster_servers]


def local_backends(settings: Settings) -> list[Backend]:
    """The API servers `herald cluster up` runs on this machine."""
    host = _connectable(settings.host)
    return [Backend(f"server{i}", host, port) for i, port in enumerate(server_ports(settings), 1)]


def parse_backend(spec: str, index: int) -> Backend:
    """`name=host:port` or `host:port` (named serverN), as given to `--server`."""
    name, _, address = spec.rpartition("=")
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ClusterError(f"--server {spec!r}: expected [name=]host:port")
    return Backend(name or f"server{index}", host.strip("[]"), int(port))


def _connectable(host: str) -> str:
    # A server listening on every interface is reached on loopback from this machine.
    return "127.0.0.1" if host in ("0.0.0.0", "", "*") else host
