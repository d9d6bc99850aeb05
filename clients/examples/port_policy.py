"""A port policy controller: every port of a bridge may send only from its own IPv4 addresses
(and ARP); the rules come when the port comes and go when it goes. Run as root (or anyone who
can reach the daemon's socket):

    python clients/examples/port_policy.py br0 [--socket PATH]

Per port P with addresses A1..An (its Port.addresses), cookie = a hash of P's name:
    priority=210,in_port=P,arp,actions=normal
    priority=200,in_port=P,ip,nw_src=Ai,actions=normal      (one per address)
    priority=100,in_port=P,actions=drop                     (anything else, e.g. a spoofed IP)

It lists the ports, installs their rules, then follows the port events from the list's
revision (so no change is missed between the two); if the daemon no longer holds the events
after a long outage, it lists again and makes the rules right (on_resync).
"""

from __future__ import annotations

import argparse
import hashlib
import ipaddress
import logging
import signal
import sys

from vswapi import NotFound, Switch, pb

log = logging.getLogger("port_policy")


def cookie(port: str) -> int:
    """A stable cookie per port name (63 bits: fits the API's u64 and ovs-ofctl syntax)."""
    return int.from_bytes(hashlib.sha256(port.encode()).digest()[:8], "big") >> 1


def rules(port: pb.Port) -> list[str]:
    c, p = f"cookie={cookie(port.name):#x}", port.name
    out = [f"{c},priority=210,in_port={p},arp,actions=normal"]
    for cidr in port.addresses:
        ip = ipaddress.ip_interface(cidr).ip
        if ip.version == 4:
            out.append(f"{c},priority=200,in_port={p},ip,nw_src={ip},actions=normal")
    out.append(f"{c},priority=100,in_port={p},actions=drop")
    return out


class PortPolicy:
    def __init__(self, sw: Switch, bridge: str) -> None:
        self.sw, self.bridge = sw, bridge
        self.stream = None

    def stop(self) -> None:
        if self.stream is not None:
            self.stream.close()

    def install(self, port: pb.Port) -> None:
        if port.type == pb.PORT_TYPE_VXLAN:
            return  # tunnels carry other hosts' traffic: no per-port source policy
        added, replaced = self.sw.add_flows(self.bridge, rules(port))
        log.info("port %s: %d rules installed (%d replaced)", port.name, added, replaced)

    def remove(self, name: str) -> None:
        n = self.sw.delete_flows(self.bridge, cookie=cookie(name), cookie_mask=(1 << 64) - 1)
        log.info("port %s gone: %d rules removed", name, n)

    def sync(self) -> int:
        """Make every port's rules right; the revision the ports were listed at."""
        ports = self.sw.list_ports(self.bridge)
        for port in ports:
            self.install(port)
        return ports.revision

    def run(self) -> None:
        since = self.sync()
        self.stream = self.sw.events([self.bridge], kinds=["port"], since_revision=since,
                                     on_resync=self.sync)
        for event in self.stream:
            if event.WhichOneof("kind") == "lost":  # we read too slowly: start over
                log.warning("lost %d events: re-reading the ports", event.lost.count)
                self.sync()
                continue
            change, port = event.port.change, event.port.port
            if change == pb.CHANGE_ADDED:
                self.install(port)
            elif change == pb.CHANGE_REMOVED:
                self.remove(port.name)
            elif change == pb.CHANGE_CHANGED and event.port.reason == pb.PortEvent.RESTORED:
                self.install(port)  # made again: its rules may have gone with it


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bridge")
    ap.add_argument("--socket", help="the daemon's socket (default $VSWITCHD_SOCKET or "
                                     "/run/vswitchd/vswitchd.sock)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    with Switch.connect(socket_path=args.socket) as sw:
        policy = PortPolicy(sw, args.bridge)
        signal.signal(signal.SIGTERM, lambda *_: policy.stop())
        try:
            policy.run()
        except NotFound as exc:
            log.error("%s", exc.details)
            return 1
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
