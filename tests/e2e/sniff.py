"""Count the frames on this machine's uplink that carry a pod or Service address; print the count.

    python sniff.py --seconds 20

The uplink is the interface of the default route. A raw AF_PACKET socket (root) sees every frame sent or
received there; an IPv4 frame whose source or destination lies in 10.244.0.0/16 (pods) or 10.96.0.0/16
(Services) would mean a packet of the cluster left this machine. The end-to-end test expects 0.
"""

from __future__ import annotations

import argparse
import ipaddress
import socket
import struct
import time
from pathlib import Path

RANGES = [ipaddress.ip_network("10.244.0.0/16"), ipaddress.ip_network("10.96.0.0/16")]
ETH_P_ALL = 0x0003
ETH_P_IP = 0x0800


def uplink() -> str:
    for line in Path("/proc/net/route").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1] == "00000000":
            return fields[0]
    raise SystemExit("no default route: no uplink to watch")


def count(interface: str, seconds: float) -> int:
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.ntohs(ETH_P_ALL))
    sock.bind((interface, 0))
    sock.settimeout(0.2)
    seen = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            frame = sock.recv(65535)
        except TimeoutError:
            continue
        if len(frame) < 34 or struct.unpack("!H", frame[12:14])[0] != ETH_P_IP:
            continue
        source, destination = ipaddress.ip_address(frame[26:30]), ipaddress.ip_address(frame[30:34])
        if any(source in net or destination in net for net in RANGES):
            seen += 1
    return seen


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=20)
    args = parser.parse_args()
    print(count(uplink(), args.seconds), flush=True)


if __name__ == "__main__":
    main()
