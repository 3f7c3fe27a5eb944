"""hostPort rules as data (`orchestrator.node.hostports`): which container ports map, and the
iptables-restore text that holds them (portmap's layout, our chain names)."""

from __future__ import annotations

from ipaddress import IPv4Network

from orchestrator.node.hostports import CHAIN, MASQ_CHAIN, PortMapping, mappings_of, render


def test_mappings_of_a_pod() -> None:
    pod = {"metadata": {"name": "web", "namespace": "team"}, "spec": {"containers": [
        {"name": "a", "ports": [{"containerPort": 80, "hostPort": 8080},
                                {"containerPort": 53, "hostPort": 5353, "protocol": "UDP", "hostIP": "10.0.0.5"},
                                {"containerPort": 9000}]},  # no hostPort: not mapped
        {"name": "b", "ports": [{"containerPort": 81, "hostPort": 8081, "hostIP": "0.0.0.0"},
                                {"containerPort": 82, "hostPort": 8082, "hostIP": "fd00::1"}]},  # IPv6: every address
    ]}}
    assert mappings_of(pod, "10.244.1.7") == [
        PortMapping("TCP", 8080, "", "10.244.1.7", 80, "team/web"),
        PortMapping("UDP", 5353, "10.0.0.5", "10.244.1.7", 53, "team/web"),
        PortMapping("TCP", 8081, "", "10.244.1.7", 81, "team/web"),
        PortMapping("TCP", 8082, "", "10.244.1.7", 82, "team/web"),
    ]
    assert mappings_of({"metadata": {"name": "x"}, "spec": {}}, "10.244.1.8") == []


def test_render_is_portmaps_layout_in_our_chains() -> None:
    net = IPv4Network("10.244.1.0/24")
    text = render([PortMapping("UDP", 5353, "10.0.0.5", "10.244.1.7", 53, "team/web"),
                   PortMapping("TCP", 8080, "", "10.244.1.7", 80, "team/web")], net)
    tcp = f'-A {CHAIN} -p tcp -m tcp --dport 8080 -m comment --comment "team/web hostPort 8080/TCP"'
    udp = f'-A {CHAIN} -d 10.0.0.5/32 -p udp -m udp --dport 5353 -m comment --comment "team/web hostPort 5353/UDP"'
    assert text.splitlines() == [
        "*nat", f":{CHAIN} - [0:0]", f":{MASQ_CHAIN} - [0:0]",
        f"{tcp} -s 10.244.1.0/24 -j MARK --set-xmark 0x2000/0x2000",  # hairpin from the node's pods
        f"{tcp} -s 127.0.0.0/8 -j MARK --set-xmark 0x2000/0x2000",  # the node's localhost
        f"{tcp} -j DNAT --to-destination 10.244.1.7:80",
        f"{udp} -s 10.244.1.0/24 -j MARK --set-xmark 0x2000/0x2000",
        f"{udp} -s 127.0.0.0/8 -j MARK --set-xmark 0x2000/0x2000",
        f"{udp} -j DNAT --to-destination 10.244.1.7:53",
        f"-A {MASQ_CHAIN} -m mark --mark 0x2000/0x2000 -j MASQUERADE", "COMMIT",
    ]
    assert render([], net).splitlines() == ["*nat", f":{CHAIN} - [0:0]", f":{MASQ_CHAIN} - [0:0]",
                                            f"-A {MASQ_CHAIN} -m mark --mark 0x2000/0x2000 -j MASQUERADE", "COMMIT"]
