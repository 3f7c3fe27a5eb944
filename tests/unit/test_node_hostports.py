"""hostPort rules as data (`orchestrator.node.hostports`): which container ports map, the
iptables-restore text that holds them (portmap's layout, our chain names), reading that back,
and the UDP/SCTP conntrack deletions a change of mappings needs."""

from __future__ import annotations

import logging
from ipaddress import IPv4Network
from types import SimpleNamespace

import pytest

from orchestrator.node import hostports
from orchestrator.node.hostports import (
    CHAIN,
    MASQ_CHAIN,
    NO_FLOWS,
    ConntrackFlush,
    HostPorts,
    PortMapping,
    conntrack_flushes,
    mappings_of,
    parse_applied,
    render,
)


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


# ---------------------------------------------------------------- conntrack after a change
def udp(host_port: int, pod_ip: str, container_port: int = 53, host_ip: str = "", pod: str = "team/dns") -> PortMapping:
    return PortMapping("UDP", host_port, host_ip, pod_ip, container_port, pod)


def test_an_added_udp_mapping_flushes_every_flow_to_its_host_port() -> None:
    """Portmap's and kubelet's flush on ADD: an un-NATed entry from before the rule would outlive it."""
    tcp = PortMapping("TCP", 8080, "", "10.244.1.7", 80, "team/web")
    assert conntrack_flushes([], [udp(5353, "10.244.1.7"), tcp, udp(5354, "10.244.1.7", host_ip="10.0.0.5")]) == [
        ConntrackFlush("UDP", 5353, "", ""), ConntrackFlush("UDP", 5354, "10.0.0.5", "")]
    assert conntrack_flushes([], [tcp]) == []  # TCP is never flushed, as upstream
    assert conntrack_flushes([], [PortMapping("SCTP", 9, "", "10.244.1.7", 9, "team/web")]) == [
        ConntrackFlush("SCTP", 9, "", "")]


def test_a_removed_udp_mapping_flushes_only_the_flows_dnated_to_its_pod() -> None:
    assert conntrack_flushes([udp(5353, "10.244.1.7"), udp(5354, "10.244.1.8")], [udp(5354, "10.244.1.8")]) == [
        ConntrackFlush("UDP", 5353, "", "10.244.1.7")]
    assert conntrack_flushes([udp(5353, "10.244.1.7", host_ip="10.0.0.5")], []) == [
        ConntrackFlush("UDP", 5353, "10.0.0.5", "10.244.1.7")]


def test_a_moved_mapping_flushes_once_and_an_unchanged_one_never() -> None:
    # to another pod, or another container port: the addition's flush covers the old pod's flows
    assert conntrack_flushes([udp(5353, "10.244.1.7")], [udp(5353, "10.244.1.9", pod="team/dns2")]) == [
        ConntrackFlush("UDP", 5353, "", "")]
    assert conntrack_flushes([udp(5353, "10.244.1.7")], [udp(5353, "10.244.1.7", container_port=54)]) == [
        ConntrackFlush("UDP", 5353, "", "")]
    # an addition on one hostIP covers none of the flows that reached another address
    assert conntrack_flushes([udp(5353, "10.244.1.7")], [udp(5353, "10.244.1.9", host_ip="10.0.0.5")]) == [
        ConntrackFlush("UDP", 5353, "10.0.0.5", ""), ConntrackFlush("UDP", 5353, "", "10.244.1.7")]
    # the same data plane (a renamed pod is only a comment): nothing to flush
    assert conntrack_flushes([udp(5353, "10.244.1.7")], [udp(5353, "10.244.1.7", pod="team/other")]) == []
    assert conntrack_flushes([udp(5353, "10.244.1.7")], [udp(5353, "10.244.1.7")]) == []


def test_conntrack_flush_argv() -> None:
    assert ConntrackFlush("UDP", 5353, "", "").argv() == ["-D", "-p", "udp", "--orig-port-dst", "5353"]
    assert ConntrackFlush("SCTP", 9, "10.0.0.5", "10.244.1.7").argv() == [
        "-D", "-p", "sctp", "--orig-port-dst", "9", "--orig-dst", "10.0.0.5", "--dst-nat", "10.244.1.7"]


def test_parse_applied_reads_back_what_render_wrote() -> None:
    """`iptables -S` output (its own order: -s before -d) gives the mappings, one per DNAT rule."""
    listing = "\n".join([
        f"-N {CHAIN}",
        (f'-A {CHAIN} -s 10.244.1.0/24 -d 10.0.0.5/32 -p udp -m udp --dport 5353 -m comment --comment '
         f'"team/web hostPort 5353/UDP" -j MARK --set-xmark 0x2000/0x2000'),
        (f'-A {CHAIN} -d 10.0.0.5/32 -p udp -m udp --dport 5353 -m comment --comment "team/web hostPort 5353/UDP" '
         f"-j DNAT --to-destination 10.244.1.7:53"),
        (f'-A {CHAIN} -p sctp -m sctp --dport 99 -m comment --comment "team/s hostPort 99/SCTP" '
         f"-j DNAT --to-destination 10.244.1.8:98"),
        f"-A {CHAIN} -p tcp -m tcp --dport 8080 -j DNAT --to-destination 10.244.1.9:80",
        f'-A {CHAIN} -p udp --dport 1 -m comment --comment "unterminated -j DNAT',  # unreadable: skipped
        "-A OTHER -p udp -m udp --dport 7 -j DNAT --to-destination 10.0.0.1:7",  # not our chain
    ])
    assert parse_applied(listing) == [
        PortMapping("UDP", 5353, "10.0.0.5", "10.244.1.7", 53, "team/web"),
        PortMapping("SCTP", 99, "", "10.244.1.8", 98, "team/s"),
        PortMapping("TCP", 8080, "", "10.244.1.9", 80, ""),
    ]
    net = IPv4Network("10.244.1.0/24")
    ms = [udp(5353, "10.244.1.7", host_ip="10.0.0.5"), PortMapping("TCP", 8080, "", "10.244.1.7", 80, "team/web")]
    assert parse_applied(render(ms, net)) == sorted(ms)  # render's own text reads back too


class _Ran:
    def __init__(self, returncode: int, stderr: str) -> None:
        self.returncode, self.stderr, self.stdout = returncode, stderr, ""


def test_flush_is_best_effort(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """A missing conntrack is one warning; "0 flow entries have been deleted" (exit 1) is normal;
    any other failure is a warning, never an error."""
    hp = HostPorts(IPv4Network("10.244.1.0/24"), "np0", netns_name="somens")
    flushes = [ConntrackFlush("UDP", 5353, "", ""), ConntrackFlush("UDP", 5354, "", "10.244.1.7")]
    monkeypatch.setattr(hostports, "shutil", SimpleNamespace(which=lambda *_a, **_k: None))
    with caplog.at_level(logging.INFO, logger=hostports.__name__):
        hp._flush_conntrack(flushes)
        hp._flush_conntrack(flushes)
    assert [r.levelname for r in caplog.records] == ["WARNING"] and "conntrack not installed" in caplog.text

    ran: list[tuple[list[str], str | None]] = []
    answers = iter([_Ran(1, f"conntrack v1.4.7 (conntrack-tools): {NO_FLOWS}.\n"),
                    _Ran(1, "conntrack v1.4.7 (conntrack-tools): Operation failed: invalid parameters\n")])

    def run(argv: list[str], *, netns: str | None = None, check: bool = True, **_kw: object) -> _Ran:
        assert not check
        ran.append((argv, netns))
        return next(answers)

    monkeypatch.setattr(hostports, "shutil", SimpleNamespace(which=lambda *_a, **_k: "/usr/sbin/conntrack"))
    monkeypatch.setattr(hostports.ipt, "run", run)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger=hostports.__name__):
        hp._flush_conntrack(flushes)
    assert ran == [(["/usr/sbin/conntrack", *flushes[0].argv()], "somens"),
                   (["/usr/sbin/conntrack", *flushes[1].argv()], "somens")]
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("WARNING", ("hostPort conntrack -D -p udp --orig-port-dst 5354 --dst-nat 10.244.1.7: "
                     "conntrack v1.4.7 (conntrack-tools): Operation failed: invalid parameters"))]
