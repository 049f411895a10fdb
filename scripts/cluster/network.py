"""The node's network: one bridge inside this machine for pods, firewall rules that keep every pod packet in it.

Addresses (none of them routed anywhere beyond this machine):

    10.244.0.0/24   pods, on the bridge ``mobius0``; 10.244.0.1 is the bridge, the node's IP and the pods' gateway
    10.96.0.0/16    Services (kube-proxy, iptables mode); 10.96.0.1 the API server, 10.96.0.10 cluster DNS

Guarantees, enforced by rules in the ``mangle`` table's FORWARD chain (evaluated before ``filter``, where
kube-proxy puts its own ACCEPT rules, so no later rule can undo them):

- nothing that comes in from the bridge is forwarded anywhere but back onto the bridge;
- nothing from another interface is forwarded onto the bridge;
- nothing with a pod or Service source or destination is forwarded through another interface;
- this machine's own packets to pod or Service addresses leave through the bridge or not at all (mangle OUTPUT,
  plus a route that sends the Service range to the bridge rather than to the default gateway).

No MASQUERADE/SNAT rule of ours exists; kube-proxy's own masquerade (for hairpin traffic) only ever applies to
packets that these rules let through, i.e. bridge to bridge. Cluster DNS has no upstream: only cluster names
resolve. IP forwarding is switched on (pods reach Services through the host) and restored on `down`.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

BRIDGE = "mobius0"
NODE_IP = "10.244.0.1"
POD_SUBNET = "10.244.0.0/24"
CLUSTER_CIDR = "10.244.0.0/16"
SERVICE_CIDR = "10.96.0.0/16"
DNS_IP = "10.96.0.10"
CHAIN = "MOBIUS-FORWARD"
OUTPUT_CHAIN = "MOBIUS-OUTPUT"
SYSCTLS = {
    "net/ipv4/ip_forward": "1",
    "net/bridge/bridge-nf-call-iptables": "1",
}


def run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(list(argv), capture_output=True, text=True)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {result.stderr.strip()}")
    return result


def forward_rules() -> list[list[str]]:
    """The guard rules, in order, as iptables arguments for the MOBIUS-FORWARD chain."""
    return [
        ["-i", BRIDGE, "-o", BRIDGE, "-j", "RETURN"],  # pod to pod (and hairpin) stays on the bridge: fine
        ["-i", BRIDGE, "-j", "DROP"],  # from the bridge to anywhere else: never
        ["-o", BRIDGE, "-j", "DROP"],  # from anywhere else onto the bridge: never
        ["-s", CLUSTER_CIDR, "-j", "DROP"],
        ["-d", CLUSTER_CIDR, "-j", "DROP"],
        ["-s", SERVICE_CIDR, "-j", "DROP"],
        ["-d", SERVICE_CIDR, "-j", "DROP"],
    ]


def output_rules() -> list[list[str]]:
    """This machine's own packets to pod or Service addresses go onto the bridge or nowhere."""
    return [
        ["-d", CLUSTER_CIDR, "!", "-o", BRIDGE, "-j", "DROP"],
        ["-d", SERVICE_CIDR, "!", "-o", BRIDGE, "-j", "DROP"],
    ]


GUARDS = {CHAIN: ("FORWARD", forward_rules), OUTPUT_CHAIN: ("OUTPUT", output_rules)}


def firewall_up() -> None:
    """Create the guard chains and hook them first into mangle FORWARD and OUTPUT (idempotent)."""
    for chain, (hook, rules) in GUARDS.items():
        if run("iptables", "-t", "mangle", "-L", chain, "-n", check=False).returncode != 0:
            run("iptables", "-t", "mangle", "-N", chain)
        run("iptables", "-t", "mangle", "-F", chain)
        for rule in rules():
            run("iptables", "-t", "mangle", "-A", chain, *rule)
        if run("iptables", "-t", "mangle", "-C", hook, "-j", chain, check=False).returncode != 0:
            run("iptables", "-t", "mangle", "-I", hook, "1", "-j", chain)


def firewall_down() -> None:
    for chain, (hook, _) in GUARDS.items():
        while run("iptables", "-t", "mangle", "-D", hook, "-j", chain, check=False).returncode == 0:
            pass
        run("iptables", "-t", "mangle", "-F", chain, check=False)
        run("iptables", "-t", "mangle", "-X", chain, check=False)
    remove_kubelet_chains()


KUBELET_CHAINS = ("KUBE-FIREWALL", "KUBE-KUBELET-CANARY", "KUBE-IPTABLES-HINT")


def remove_kubelet_chains() -> None:
    """The chains the kubelet makes (canaries, its loopback guard); kube-proxy --cleanup removes its own."""
    for tool in ("iptables", "ip6tables"):
        for table in ("filter", "nat", "mangle"):
            listing = run(tool, "-t", table, "-S", check=False).stdout.splitlines()
            for line in listing:
                parts = line.split()
                if parts[:1] == ["-A"] and parts[-2:-1] == ["-j"] and parts[-1] in KUBELET_CHAINS:
                    run(tool, "-t", table, "-D", *parts[1:], check=False)
            for chain in KUBELET_CHAINS:
                if f"-N {chain}" in listing:
                    run(tool, "-t", table, "-F", chain, check=False)
                    run(tool, "-t", table, "-X", chain, check=False)


def bridge_up() -> None:
    """The pods' bridge with the node's address (the CNI bridge plugin then attaches pods to it)."""
    if run("ip", "link", "show", BRIDGE, check=False).returncode != 0:
        run("ip", "link", "add", BRIDGE, "type", "bridge")
    addresses = run("ip", "-4", "-o", "addr", "show", "dev", BRIDGE).stdout
    if f"{NODE_IP}/24" not in addresses:
        run("ip", "addr", "add", f"{NODE_IP}/24", "dev", BRIDGE)
    run("ip", "link", "set", BRIDGE, "up")
    # Service addresses are the bridge's too, so that this machine never sends them to its default route.
    run("ip", "route", "replace", SERVICE_CIDR, "dev", BRIDGE, "src", NODE_IP)


def bridge_down() -> None:
    run("ip", "link", "del", BRIDGE, check=False)


def sysctls_set() -> dict[str, str]:
    """Switch on what the node needs; return the previous values, for `down` to restore."""
    before = {}
    for key, value in SYSCTLS.items():
        path = Path("/proc/sys") / key
        before[key] = path.read_text().strip()
        path.write_text(value)
    return before


def sysctls_restore(before: dict[str, str]) -> None:
    for key, value in before.items():
        path = Path("/proc/sys") / key
        if path.exists():
            path.write_text(value)


def cni_config(directory: Path) -> Path:
    """The CNI network: Debian's bridge + host-local + loopback plugins, no IP masquerade, hairpin on."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "10-mobius.conflist"
    path.write_text(
        "{\n"
        '  "cniVersion": "0.4.0",\n'
        '  "name": "mobius",\n'
        '  "plugins": [\n'
        "    {\n"
        '      "type": "bridge",\n'
        f'      "bridge": "{BRIDGE}",\n'
        '      "isGateway": true,\n'
        '      "ipMasq": false,\n'
        '      "hairpinMode": true,\n'
        '      "ipam": {\n'
        '        "type": "host-local",\n'
        f'        "ranges": [[{{"subnet": "{POD_SUBNET}", "gateway": "{NODE_IP}"}}]],\n'
        f'        "routes": [{{"dst": "0.0.0.0/0"}}],\n'
        f'        "dataDir": "{directory.parent / "ipam"}"\n'
        "      }\n"
        "    },\n"
        '    {"type": "loopback"}\n'
        "  ]\n"
        "}\n"
    )
    return path
