"""Several servers behind one gRPC channel: a static address list that ``pick_first`` fails over along.

``static_target([(host, port), ...])`` resolves names once (the OS resolver) into ``ipv4:a:p,b:p`` (or
``ipv6:[a]:p,...`` when any address is IPv6, IPv4 ones then v4-mapped). The channel connects to the first address
that answers and, when that connection breaks, to the next, without a new channel. Names that do not resolve are
left out (the others are still worth connecting to); None when nothing resolves.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Sequence


def static_target(endpoints: Sequence[tuple[str, int | str]]) -> str | None:
    addresses: list[tuple[str, str]] = []
    for host, port in endpoints:
        host = host.strip("[]")
        try:
            ips = [str(ipaddress.ip_address(host))]
        except ValueError:  # a name: every address it has
            try:
                ips = sorted({str(i[4][0]) for i in socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM)})
            except (OSError, ValueError):
                continue
        addresses += [(ip, str(port)) for ip in ips]
    if not addresses:
        return None
    if all(":" not in ip for ip, _ in addresses):
        return "ipv4:" + ",".join(f"{ip}:{port}" for ip, port in addresses)
    return "ipv6:" + ",".join(f"[{ip}]:{port}" if ":" in ip else f"[::ffff:{ip}]:{port}" for ip, port in addresses)
