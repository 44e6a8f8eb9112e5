"""Which MCP servers a session may reach: the operator's `--mcp-allow-hosts`.

A client names the MCP server; without a limit it could make the server call addresses only
the server can reach (a metadata service, an admin port on loopback). So by default only
public addresses are allowed: the host is resolved and every address it resolves to must be
global, so a public name that resolves to an internal address is refused too. The operator
allows more with `--mcp-allow-hosts`: host names (matched exactly), IP addresses, networks
(`10.0.0.0/8`), or `*` for any host.

The check runs twice: on the URL before connecting (a clear error early), and on every
connection the HTTP client opens (`CheckedNetwork`), which connects to the very address it
checked, so a DNS answer that changes in between (rebinding) cannot slip an internal address
in. Through an HTTP proxy (`HTTPS_PROXY`) only the first check applies: the proxy connects.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from typing import Any
from urllib.parse import urlsplit

from .base import McpError

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def _refused(message: str) -> McpError:
    return McpError("http_error", message, code=403)


class HostPolicy:
    def __init__(self, allowed: list[str]) -> None:
        self.any_host = "*" in allowed
        self.names: set[str] = set()
        self.networks: list[IpNetwork] = []
        for entry in allowed:
            entry = entry.strip().lower()
            if not entry or entry == "*":
                continue
            try:
                self.networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                self.names.add(entry.rstrip("."))

    def _allows_address(self, address: IpAddress) -> bool:
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        if any(address in network for network in self.networks):
            return True
        return address.is_global and not address.is_multicast

    async def check(self, url: str) -> None:
        """Raises McpError when `url` may not be reached; resolves its host."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise _refused("The MCP server_url must be an http:// or https:// URL with a host.")
        await self.address(parts.hostname, parts.port or 443)

    async def address(self, host: str, port: int) -> str:
        """The address to connect to for `host`: itself when the operator allows it by name
        (or allows any), else the first address it resolves to, once every one is allowed.
        Raises McpError."""
        host = host.lower().rstrip(".")
        if self.any_host or host in self.names:
            return host
        try:
            literal: IpAddress | None = ipaddress.ip_address(host)
        except ValueError:
            literal = None
        if literal is not None:
            addresses = [literal]
        else:
            try:
                infos = await asyncio.get_running_loop().getaddrinfo(
                    host, port, type=socket.SOCK_STREAM
                )
            except OSError as exc:
                raise McpError(
                    "http_error",
                    f"Could not resolve the MCP server host {host!r}.",
                    detail=str(exc),
                ) from exc
            addresses = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]
        for address in addresses:
            if not self._allows_address(address):
                raise _refused(
                    f"The MCP server host {host!r} is not allowed: it is (or resolves to) a "
                    "loopback, private or link-local address. The server's operator can allow "
                    "it with --mcp-allow-hosts."
                )
        return str(addresses[0])


class CheckedNetwork:
    """An httpcore network backend that checks each connection's host with the policy and
    connects to the address it checked; TLS still verifies the host name (httpcore gives it
    to `start_tls` apart from the address)."""

    def __init__(self, inner: Any, policy: HostPolicy) -> None:
        self._inner = inner
        self._policy = policy

    async def connect_tcp(self, host: str, port: int, **options: Any) -> Any:
        address = await self._policy.address(host, port)
        return await self._inner.connect_tcp(address, port, **options)

    async def connect_unix_socket(self, path: str, **options: Any) -> Any:
        raise _refused("MCP servers are reached over TCP only.")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)
