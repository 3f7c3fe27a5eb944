"""Probes: spec defaults and named ports, threshold counting and transitions on a fake clock
with a fake exec, the scheduler thread, and tcpSocket / httpGet against real servers on
127.0.0.1 (success, refused, timeout, 500, redirects)."""

from __future__ import annotations

import http.server
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

import pytest

from orchestrator.node.probes import (
    Counter,
    ExecCheck,
    HTTPCheck,
    Outcome,
    ProbeKey,
    ProbeManager,
    ProbeSpec,
    TCPCheck,
    Transition,
    http_check,
    probe_spec,
    run_check,
    tcp_check,
)
from tests.waiting import wait_for

WEB = {"name": "web", "image": "i", "ports": [{"name": "http", "containerPort": 8080},
                                              {"name": "admin", "containerPort": 9000}]}


# --------------------------------------------------------------------------- spec
def test_kubernetes_defaults() -> None:
    assert probe_spec({"tcpSocket": {"port": 80}}, WEB) == ProbeSpec(
        TCPCheck(80), initial_delay=0, period=10, timeout=1, success_threshold=1,
        failure_threshold=3)
    s = probe_spec({"httpGet": {"port": "http"}, "periodSeconds": 0, "failureThreshold": 0}, WEB)
    assert s == ProbeSpec(HTTPCheck(8080, path="/", host="", scheme="HTTP"))


def test_fields_named_ports_and_handlers() -> None:
    s = probe_spec({"httpGet": {"port": "admin", "path": "/healthz", "host": "10.1.1.1",
                                "scheme": "https",
                                "httpHeaders": [{"name": "X-Probe", "value": "1"}]},
                    "initialDelaySeconds": 5, "periodSeconds": 2, "timeoutSeconds": 3,
                    "successThreshold": 2, "failureThreshold": 4}, WEB)
    assert s == ProbeSpec(HTTPCheck(9000, "/healthz", "10.1.1.1", "HTTPS", (("X-Probe", "1"),)),
                          initial_delay=5, period=2, timeout=3, success_threshold=2,
                          failure_threshold=4)
    assert probe_spec({"tcpSocket": {"port": "8081"}}, WEB) == ProbeSpec(TCPCheck(8081))
    assert probe_spec({"tcpSocket": {"port": "nope"}}, WEB) == ProbeSpec(TCPCheck("nope"))
    assert probe_spec({"exec": {"command": ["cat", "/tmp/ok"]}}, WEB) == ProbeSpec(
        ExecCheck(("cat", "/tmp/ok")))
    assert probe_spec({"periodSeconds": 3}, WEB) is None


def test_an_unresolved_port_or_missing_ip_is_an_error_not_a_failure() -> None:
    assert run_check(TCPCheck("nope"), pod_ip="127.0.0.1", timeout=1).result == "error"
    assert run_check(TCPCheck(80), pod_ip="", timeout=1).result == "error"
    assert run_check(ExecCheck(("true",)), pod_ip="", timeout=1).result == "error"


# --------------------------------------------------------------------------- counting
SPEC = ProbeSpec(ExecCheck(("check",)))


def test_readiness_counts_to_the_thresholds() -> None:
    c = Counter("readiness", ProbeSpec(ExecCheck(()), success_threshold=2, failure_threshold=3))
    assert c.result is False
    assert c.observe("success") is None          # 1 of 2
    assert c.observe("success") is True          # ready
    assert c.observe("success") is None          # no change, no report
    assert c.observe("failure") is None
    assert c.observe("success") is None          # a success breaks the failure run
    assert [c.observe("failure") for _ in range(3)] == [None, None, False]
    assert c.observe("failure") is None
    assert c.observe("success") is None and c.observe("success") is True


def test_errors_are_thrown_away_without_breaking_a_run() -> None:
    c = Counter("readiness", SPEC)
    assert c.observe("success") is True
    assert [c.observe(r) for r in ("failure", "error", "failure", "error", "failure")] == [
        None, None, None, None, False]


def test_liveness_starts_alive_reports_once_and_holds() -> None:
    c = Counter("liveness", SPEC)
    assert c.result is True
    assert [c.observe("failure") for _ in range(3)] == [None, None, False]
    assert c.on_hold
    assert c.observe("success") is None and c.result is False


# --------------------------------------------------------------------------- manager, fake clock
class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


class Exec:
    """A scripted exec_fn: pops exit codes (the last repeats), records calls."""

    def __init__(self, *codes: int | type[BaseException]) -> None:
        self.codes = list(codes)
        self.calls: list[tuple[list[str], float]] = []

    def set(self, *codes: int | type[BaseException]) -> None:
        self.codes = list(codes)

    def __call__(self, cmd: list[str], timeout: float) -> int:
        self.calls.append((cmd, timeout))
        code = self.codes.pop(0) if len(self.codes) > 1 else self.codes[0]
        if isinstance(code, type):
            raise code("scripted")
        return code


def mkpod(uid: str = "u1", **probes: dict[str, Any]) -> dict[str, Any]:
    c: dict[str, Any] = {"name": "web", "image": "i", "ports": WEB["ports"]}
    for kind, p in probes.items():
        c[f"{kind}Probe"] = p
    return {"metadata": {"name": "web-abc", "namespace": "default", "uid": uid},
            "spec": {"containers": [c]}}


def exec_probe(**kw: Any) -> dict[str, Any]:
    return {"exec": {"command": ["check"]}, **kw}


@pytest.fixture
def env() -> Iterator[tuple[ProbeManager, Clock, list[Transition]]]:
    clock, seen = Clock(), list[Transition]()
    m = ProbeManager(seen.append, clock=clock, submit=lambda fn: fn(), rand=lambda: 0.5)
    yield m, clock, seen
    m.stop()


def advance(m: ProbeManager, clock: Clock, until: float, step: float = 0.5) -> None:
    """Move the fake clock to `until` in steps, running whatever falls due."""
    while clock.t < until:
        clock.t = min(until, clock.t + step)
        m.run_due()


def test_readiness_waits_the_initial_delay_then_probes_every_period(env: Any) -> None:
    m, clock, seen = env
    ex = Exec(0)
    assert m.add_pod(mkpod(readiness=exec_probe(initialDelaySeconds=5, periodSeconds=10,
                                                timeoutSeconds=2))) == [
        ProbeKey("u1", "web", "readiness")]
    assert m.ready("u1", "web") is False
    t0 = clock.t
    m.container_started("u1", "web", container_id="docker://a", pod_ip="10.0.0.5", exec_fn=ex)
    advance(m, clock, t0 + 4.5)
    assert ex.calls == []
    advance(m, clock, t0 + 5)
    assert ex.calls == [(["check"], 2.0)]
    assert seen == [Transition(ProbeKey("u1", "web", "readiness"), True, "docker://a", "")]
    assert m.ready("u1", "web") is True
    advance(m, clock, t0 + 34.5)
    assert len(ex.calls) == 3  # 5, 15, 25
    assert m.next_due() == t0 + 35
    assert len(seen) == 1


def test_readiness_failure_threshold_and_recovery(env: Any) -> None:
    m, clock, seen = env
    ex = Exec(0)
    m.add_pod(mkpod(readiness=exec_probe(periodSeconds=1, failureThreshold=3)))
    m.container_started("u1", "web", container_id="docker://a", pod_ip="10.0.0.5", exec_fn=ex)
    m.run_due()
    assert [t.success for t in seen] == [True]
    ex.set(1)
    advance(m, clock, clock.t + 2)
    assert [t.success for t in seen] == [True]  # 2 failures: still ready
    advance(m, clock, clock.t + 1)
    assert [t.success for t in seen] == [True, False]
    assert "exited with 1" in seen[-1].message
    ex.set(0)
    advance(m, clock, clock.t + 1)
    assert [t.success for t in seen] == [True, False, True]


def test_liveness_failure_asks_for_a_restart_once_then_holds(env: Any) -> None:
    m, clock, seen = env
    ex = Exec(1)
    m.add_pod(mkpod(liveness=exec_probe(periodSeconds=10)))
    assert m.result(ProbeKey("u1", "web", "liveness")) is True
    t0 = clock.t
    m.container_started("u1", "web", container_id="docker://a", pod_ip="10.0.0.5", exec_fn=ex)
    advance(m, clock, t0 + 19.5)
    assert seen == []
    advance(m, clock, t0 + 20)
    assert seen == [Transition(ProbeKey("u1", "web", "liveness"), False, "docker://a",
                               "command ['check'] exited with 1")]
    advance(m, clock, t0 + 100)
    assert len(ex.calls) == 3 and len(seen) == 1  # on hold until the container is replaced
    ex2 = Exec(0)
    m.container_started("u1", "web", container_id="docker://b", pod_ip="10.0.0.5", exec_fn=ex2)
    assert m.result(ProbeKey("u1", "web", "liveness")) is True
    advance(m, clock, t0 + 120)
    assert len(ex2.calls) == 3 and len(seen) == 1


def test_a_new_instance_or_a_stop_makes_the_container_unready(env: Any) -> None:
    m, clock, seen = env
    ex = Exec(0)
    m.add_pod(mkpod(readiness=exec_probe(periodSeconds=1), liveness=exec_probe(periodSeconds=1)))
    m.container_started("u1", "web", container_id="docker://a", pod_ip="10.0.0.5", exec_fn=ex)
    m.run_due()
    assert [t.success for t in seen] == [True]
    m.container_started("u1", "web", container_id="docker://a", pod_ip="10.0.0.5", exec_fn=ex)
    assert len(seen) == 1  # the same instance: nothing starts over
    m.container_started("u1", "web", container_id="docker://b", pod_ip="10.0.0.5", exec_fn=ex)
    assert seen[-1] == Transition(ProbeKey("u1", "web", "readiness"), False, "docker://b",
                                  "container restarted", probed=False)  # no probe failed: no Unhealthy event
    m.run_due()
    assert seen[-1].success is True and seen[-1].container_id == "docker://b"
    # the old instance's schedule is dropped: one probe per period for the new one
    n = len(ex.calls)
    advance(m, clock, clock.t + 3)
    assert len(ex.calls) == n + 2 * 3  # readiness and liveness, every second
    m.container_stopped("u1", "web")
    assert seen[-1].success is False and not seen[-1].probed and m.ready("u1", "web") is False
    n = len(ex.calls)
    advance(m, clock, clock.t + 5)
    assert len(ex.calls) == n  # no probes of a stopped container


def test_errors_leave_the_result_alone_and_timeouts_fail(env: Any) -> None:
    m, clock, seen = env
    ex = Exec(0)
    m.add_pod(mkpod(readiness=exec_probe(periodSeconds=1, failureThreshold=1),
                    liveness={"tcpSocket": {"port": "no-such-port"}, "periodSeconds": 1,
                              "failureThreshold": 1}))
    m.container_started("u1", "web", container_id="docker://a", pod_ip="127.0.0.1", exec_fn=ex)
    m.run_due()
    assert [t.success for t in seen] == [True]
    ex.set(RuntimeError)  # the runtime cannot exec: not the container's failure
    advance(m, clock, clock.t + 5)
    assert len(ex.calls) == 6
    assert [t.success for t in seen] == [True] and m.ready("u1", "web") is True
    # the unknown port never counted either: liveness still alive, no restart asked
    assert m.result(ProbeKey("u1", "web", "liveness")) is True
    ex.set(TimeoutError)
    advance(m, clock, clock.t + 1)
    assert seen[-1].success is False and "timed out" in seen[-1].message


def test_removed_pods_are_not_probed(env: Any) -> None:
    m, clock, seen = env
    execs = {"u1": Exec(0), "u2": Exec(0)}
    m.add_pod(mkpod(readiness=exec_probe(periodSeconds=1)))
    m.add_pod(mkpod("u2", readiness=exec_probe(periodSeconds=1)))
    for uid in ("u1", "u2"):
        m.container_started(uid, "web", container_id=f"docker://{uid}", pod_ip="10.0.0.5",
                            exec_fn=execs[uid])
    m.remove_pod("u1")
    advance(m, clock, clock.t + 3)
    assert execs["u1"].calls == [] and len(execs["u2"].calls) == 4
    assert {t.key.pod_uid for t in seen} == {"u2"}
    assert m.keys() == [ProbeKey("u2", "web", "readiness")]
    assert m.ready("u1", "web") is None


@pytest.mark.parametrize(("running_for", "assume_ready", "first_in", "ready"), [
    (600, True, 5.0, True),   # adopted and kept ready: first probe at rand() = 0.5 of a period
    (600, False, 0.0, False),  # adopted, not ready until probed: at once
    (2, False, 3.0, False),   # 2 s into a 5 s initial delay
    (0, True, 5.0, True),
])
def test_adopted_containers_and_the_initial_delay(running_for: float, assume_ready: bool,
                                                  first_in: float, ready: bool) -> None:
    clock, seen = Clock(), list[Transition]()
    m = ProbeManager(seen.append, clock=clock, submit=lambda fn: fn(), rand=lambda: 0.5)
    m.add_pod(mkpod(readiness=exec_probe(periodSeconds=10, initialDelaySeconds=5)))
    m.container_started("u1", "web", container_id="docker://a", pod_ip="10.0.0.5",
                        exec_fn=Exec(0), running_for=running_for, assume_ready=assume_ready)
    assert m.ready("u1", "web") is ready and seen == []
    assert m.next_due() == clock.t + first_in
    m.stop()


def test_a_result_of_a_replaced_instance_is_thrown_away(env: Any) -> None:
    _, clock, _ = env
    queued: list[Callable[[], None]] = []
    seen: list[Transition] = []
    m = ProbeManager(seen.append, clock=clock, submit=queued.append)
    ex = Exec(0)
    m.add_pod(mkpod(readiness=exec_probe(periodSeconds=1)))
    m.container_started("u1", "web", container_id="docker://a", pod_ip="10.0.0.5", exec_fn=ex)
    m.run_due()
    assert len(queued) == 1  # in flight
    m.container_started("u1", "web", container_id="docker://b", pod_ip="10.0.0.5", exec_fn=ex)
    m.run_due()
    assert len(queued) == 1  # never two probes of one worker at once
    queued.pop()()  # the old instance's probe completes: ignored, the new one is run next
    assert seen == [] and m.ready("u1", "web") is False
    m.run_due()
    assert len(queued) == 1
    queued.pop()()
    assert seen == [Transition(ProbeKey("u1", "web", "readiness"), True, "docker://b", "")]


# --------------------------------------------------------------------------- real checks
class Handler(http.server.BaseHTTPRequestHandler):
    agents: ClassVar[list[str]] = []

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        Handler.agents.append(self.headers.get("User-Agent", ""))
        path = self.path
        if path == "/slow":
            time.sleep(1.0)
        if path.startswith("/redirect/"):
            to = path[len("/redirect/"):]
            target = {"ok": "/ok", "fail": "/fail", "away": "http://probe-target.invalid/ok",
                      "loop": "/redirect/loop"}[to]
            self.send_response(302)
            self.send_header("Location", target)
            self.end_headers()
            return
        code = {"/ok": 200, "/fail": 500, "/slow": 200, "/missing": 404, "/moved": 301}.get(path, 200)
        if path == "/hdr":
            code = 200 if self.headers.get("X-Probe") == "yes" else 403
        body = b"x" * 50_000 if path == "/big" else b"hello"
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope="module")
def http_port() -> Iterator[int]:
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True
    t = threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True)
    t.start()
    yield srv.server_address[1]
    srv.shutdown()
    srv.server_close()


@pytest.mark.parametrize(("path", "result", "message"), [
    ("/ok", "success", ""),
    ("/big", "success", ""),
    ("/fail", "failure", "HTTP probe failed with statuscode: 500"),
    ("/missing", "failure", "HTTP probe failed with statuscode: 404"),
    ("/moved", "success", ""),                  # 3xx without Location: 200-399
    ("/redirect/ok", "success", ""),            # same host: followed
    ("/redirect/fail", "failure", "HTTP probe failed with statuscode: 500"),
    ("/redirect/away", "success", "Probe terminated redirects, status 302"),  # not followed
    ("/redirect/loop", "failure", "stopped after 10 redirects"),
])
def test_http_get(http_port: int, path: str, result: str, message: str) -> None:
    out = http_check(host="127.0.0.1", port=http_port, path=path, timeout=2)
    assert out.result == result
    assert message in out.message


def test_http_get_sends_kube_probe_agent_and_headers(http_port: int) -> None:
    Handler.agents.clear()
    assert http_check(host="127.0.0.1", port=http_port, path="/hdr", timeout=2).result == "failure"
    assert http_check(host="127.0.0.1", port=http_port, path="/hdr", timeout=2,
                      headers=(("X-Probe", "yes"),)).result == "success"
    assert Handler.agents and all(a.startswith("kube-probe/") for a in Handler.agents)


def test_http_get_times_out(http_port: int) -> None:
    t = time.monotonic()
    out = http_check(host="127.0.0.1", port=http_port, path="/slow", timeout=0.2)
    assert out == Outcome("failure", f'Get "http://127.0.0.1:{http_port}/slow": '
                                     "context deadline exceeded")
    assert time.monotonic() - t < 0.8


def test_http_get_refused() -> None:
    port = free_port()
    out = http_check(host="127.0.0.1", port=port, path="/", timeout=1)
    assert out.result == "failure" and "refused" in out.message.lower()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_tcp_socket_connects_or_fails() -> None:
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen(8)
        assert tcp_check("127.0.0.1", srv.getsockname()[1], 1) == Outcome("success")
    out = tcp_check("127.0.0.1", free_port(), 1)
    assert out.result == "failure" and "refused" in out.message.lower()


def test_tcp_socket_times_out_on_a_full_backlog() -> None:
    """A listener that never accepts, its queue full: Linux drops further SYNs."""
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen(0)
        port = srv.getsockname()[1]
        held: list[socket.socket] = []
        try:
            for _ in range(8):  # fill the accept queue until a connect hangs
                c = socket.socket()
                c.settimeout(0.2)
                held.append(c)
                try:
                    c.connect(("127.0.0.1", port))
                except TimeoutError:
                    break
            else:
                pytest.fail("the backlog never filled")
            t = time.monotonic()
            out = tcp_check("127.0.0.1", port, 0.2)
            assert out == Outcome("failure", f"dial tcp 127.0.0.1:{port}: i/o timeout")
            assert 0.15 < time.monotonic() - t < 0.8
        finally:
            for c in held:
                c.close()


def test_network_checks_go_to_the_pod_ip_unless_a_host_is_given(http_port: int) -> None:
    assert run_check(HTTPCheck(http_port, "/ok"), pod_ip="127.0.0.1", timeout=1).result == "success"
    assert run_check(HTTPCheck(http_port, "/ok", host="127.0.0.1"), pod_ip="192.0.2.1",
                     timeout=1).result == "success"
    assert run_check(TCPCheck(http_port), pod_ip="127.0.0.1", timeout=1).result == "success"


# --------------------------------------------------------------------------- the thread
def test_scheduler_thread_runs_probes_on_their_period(http_port: int) -> None:
    seen: list[Transition] = []
    wakeups = [0]

    def clock() -> float:
        wakeups[0] += 1
        return time.monotonic()

    m = ProbeManager(seen.append, clock=clock)
    ex = Exec(0)
    try:
        m.add_pod(mkpod(readiness={"httpGet": {"port": http_port, "path": "/ok"},
                                   "periodSeconds": 0.05},
                        liveness=exec_probe(periodSeconds=0.05, failureThreshold=2)))
        m.start()
        m.container_started("u1", "web", container_id="docker://a", pod_ip="127.0.0.1",
                            exec_fn=ex)
        wait_for(lambda: m.ready("u1", "web"), 2, "ready through the thread")
        n, h, w = len(ex.calls), len(Handler.agents), wakeups[0]
        time.sleep(0.5)
        probes = len(ex.calls) - n
        assert 5 <= probes <= 12, probes  # every 50 ms
        # the thread sleeps until the next probe is due: a few clock reads per probe run
        runs = probes + len(Handler.agents) - h
        assert wakeups[0] - w <= 4 * runs, (wakeups[0] - w, runs)
        ex.set(1)
        wait_for(lambda: any(t.key.kind == "liveness" for t in seen), 2, "liveness failure")
        [restart] = [t for t in seen if t.key.kind == "liveness"]
        assert restart.success is False and restart.container_id == "docker://a"
    finally:
        t = time.monotonic()
        m.stop()
        assert time.monotonic() - t < 1.0


def test_a_new_instance_not_yet_listening_is_probed_again_soon_not_a_period_later(env: Any) -> None:
    """tcpSocket/httpGet readiness of a new instance: after a refused first probe, again at 50,
    100, 200 ... ms within its first period (then every period); exec probes keep the period."""
    m, clock, seen = env
    port = free_port()
    m.add_pod(mkpod(readiness={"tcpSocket": {"port": port}, "periodSeconds": 1}))
    t0 = clock.t
    m.container_started("u1", "web", container_id="docker://a", pod_ip="127.0.0.1")
    m.run_due()  # refused: not listening yet
    assert seen == [] and m.next_due() == pytest.approx(t0 + 0.05)
    advance(m, clock, t0 + 0.05, step=0.05)
    assert m.next_due() == pytest.approx(t0 + 0.15)  # 50 ms, then 100 ms later
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", port))
        srv.listen(8)
        advance(m, clock, t0 + 0.15, step=0.05)
        assert [t.success for t in seen] == [True]
        assert m.next_due() == pytest.approx(t0 + 1)  # ready: on its period again
    assert seen == [Transition(ProbeKey("u1", "web", "readiness"), True, "docker://a", "")]
    # never listening: retries until the second regular probe, then every period
    m2 = ProbeManager(seen.append, clock=clock, submit=lambda fn: fn())
    m2.add_pod(mkpod(uid="u2", readiness={"tcpSocket": {"port": free_port()}, "periodSeconds": 1}))
    t1 = clock.t
    m2.container_started("u2", "web", container_id="docker://b", pod_ip="127.0.0.1")
    due = []
    for _ in range(8):
        clock.t = m2.next_due() or clock.t
        m2.run_due()
        due.append(round(clock.t - t1, 2))
    assert due == [0.0, 0.05, 0.15, 0.35, 0.75, 1.0, 2.0, 3.0]
    assert len(seen) == 1


def test_exec_readiness_keeps_its_period_after_a_failed_first_probe(env: Any) -> None:
    m, clock, _ = env
    ex = Exec(1)
    m.add_pod(mkpod(readiness=exec_probe(periodSeconds=1)))
    t0 = clock.t
    m.container_started("u1", "web", container_id="docker://a", pod_ip="10.0.0.5", exec_fn=ex)
    m.run_due()
    assert len(ex.calls) == 1 and m.next_due() == t0 + 1
