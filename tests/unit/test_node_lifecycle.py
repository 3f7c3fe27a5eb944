"""kubelet's pod decisions: restarts and crash-loop back-off, phase and conditions, container
statuses, status change detection, graceful termination."""

from __future__ import annotations

from typing import Any

import pytest

from orchestrator.node.lifecycle import (
    Backoff,
    BackoffPolicy,
    ObservedContainer,
    Running,
    Terminated,
    Waiting,
    decide_restart,
    go_duration,
    grace_period,
    held,
    phase,
    pod_status,
    should_restart,
    status_changed,
    termination_plan,
)
from orchestrator.objects import meta

T0 = 1_717_243_200.0  # 2024-06-01T12:00:00Z


def ts(t: float) -> str:
    return meta.from_epoch(t)


def mkpod(*names: str, policy: str | None = None, status: dict[str, Any] | None = None,
          deleting_at: float | None = None, grace: int | None = None,
          spec_grace: int | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"nodeName": "h1",
                            "containers": [{"name": n, "image": f"img/{n}:1"} for n in names or ("web",)]}
    if policy:
        spec["restartPolicy"] = policy
    if spec_grace is not None:
        spec["terminationGracePeriodSeconds"] = spec_grace
    md: dict[str, Any] = {"name": "web-abc", "namespace": "default", "uid": "uid-1"}
    if deleting_at is not None:
        md["deletionTimestamp"] = ts(deleting_at)
    if grace is not None:
        md["deletionGracePeriodSeconds"] = grace
    pod: dict[str, Any] = {"apiVersion": "v1", "kind": "Pod", "metadata": md, "spec": spec}
    if status is not None:
        pod["status"] = status
    return pod


def running(name: str = "web", *, ready: bool = True, since: float = T0, restarts: int = 0) -> ObservedContainer:
    return ObservedContainer(name, Running(since), ready=ready, restart_count=restarts,
                             container_id=f"docker://{name}-id", image_id=f"docker-pullable://img/{name}@sha256:ab")


def exited(name: str = "web", code: int = 0) -> ObservedContainer:
    return ObservedContainer(name, Terminated(code, "Completed" if code == 0 else "Error",
                                              started_at=T0, finished_at=T0 + 5,
                                              container_id=f"docker://{name}-id"),
                             container_id=f"docker://{name}-id")


def cond(status: dict[str, Any], kind: str) -> dict[str, Any]:
    [c] = [c for c in status["conditions"] if c["type"] == kind]
    return c


# --------------------------------------------------------------------------- restarts
@pytest.mark.parametrize(("policy", "code", "want"), [
    ("Always", 0, True), ("Always", 1, True),
    ("OnFailure", 0, False), ("OnFailure", 2, True),
    ("Never", 0, False), ("Never", 1, False),
])
def test_restart_policy(policy: str, code: int, want: bool) -> None:
    assert should_restart(policy, code) is want


def test_crash_loop_back_off_doubles_to_the_cap_with_kubelets_message() -> None:
    pod = mkpod()
    b: Backoff | None = None
    t = T0
    # the first exit restarts at once and opens the 10 s window
    d = decide_restart(pod, "web", Terminated(1, finished_at=t), now=t, backoff=b)
    assert d.restart and d.waiting is None and d.backoff == Backoff(10.0, t)
    b = d.backoff
    waits = []
    for _ in range(8):
        t += 1.0  # the restarted instance runs 1 s, then fails again
        exit_ = Terminated(1, started_at=t - 1, finished_at=t)
        held_ = decide_restart(pod, "web", exit_, now=t + 0.5, backoff=b)
        assert not held_.restart and held_.backoff == b
        assert held_.at is not None and held_.waiting is not None
        assert held_.waiting.reason == "CrashLoopBackOff"
        waits.append(held_.at - t)
        assert held_.waiting.message == (f"back-off {go_duration(held_.at - t)} restarting failed "
                                         "container=web pod=web-abc_default(uid-1)")
        # one second before the window ends: still held; at its end: restarted
        assert not decide_restart(pod, "web", exit_, now=held_.at - 1, backoff=b).restart
        go = decide_restart(pod, "web", exit_, now=held_.at, backoff=b)
        assert go.restart
        b = go.backoff
        t = held_.at
    assert waits == [10, 20, 40, 80, 160, 300, 300, 300]
    assert decide_restart(pod, "web", Terminated(1, finished_at=t + 1), now=t + 1,
                          backoff=b).waiting.message.startswith("back-off 5m0s ")  # type: ignore[union-attr]


def test_back_off_starts_over_after_a_long_run_and_numbers_are_configurable() -> None:
    pol = BackoffPolicy(initial=1.0, cap=4.0, reset_after=5.0)
    pod = mkpod()
    b = Backoff(4.0, T0)  # deep in a crash loop, restarted at T0
    # ran 5 s (not more than reset_after): held for the capped window
    d = decide_restart(pod, "web", Terminated(1, started_at=T0, finished_at=T0 + 5), now=T0 + 5,
                       backoff=b, policy=pol)
    assert not d.restart and d.at == T0 + 9
    # ran 6 s: the loop is over, restart at once with the initial window
    d = decide_restart(pod, "web", Terminated(1, started_at=T0, finished_at=T0 + 6), now=T0 + 6,
                       backoff=b, policy=pol)
    assert d.restart and d.backoff == Backoff(1.0, T0 + 6)
    # and it doubles from there
    d2 = decide_restart(pod, "web", Terminated(1, finished_at=T0 + 7), now=T0 + 8,
                        backoff=d.backoff, policy=pol)
    assert d2.restart and d2.backoff == Backoff(2.0, T0 + 8)


@pytest.mark.parametrize(("policy", "code"), [("Never", 1), ("OnFailure", 0)])
def test_no_restart_means_never(policy: str, code: int) -> None:
    d = decide_restart(mkpod(policy=policy), "web", Terminated(code, finished_at=T0), now=T0 + 999,
                       backoff=None)
    assert not d.restart and d.at is None and d.waiting is None


def test_a_deleting_pod_is_not_restarted() -> None:
    d = decide_restart(mkpod(deleting_at=T0 + 30), "web", Terminated(0, finished_at=T0), now=T0,
                       backoff=None)
    assert not d.restart and d.at is None


@pytest.mark.parametrize(("seconds", "text"), [
    (0, "0s"), (10, "10s"), (20, "20s"), (80, "1m20s"), (160, "2m40s"), (300, "5m0s"),
    (3600, "1h0m0s"), (1.5, "1.5s"), (0.5, "500ms"), (0.0015, "1.5ms"), (90.25, "1m30.25s"),
])
def test_go_duration(seconds: float, text: str) -> None:
    assert go_duration(seconds) == text


# --------------------------------------------------------------------------- phase
R, W, CREATED = Running(T0), Waiting("CrashLoopBackOff"), Waiting("ContainerCreating")


def obs(state: Any, *, last: bool = False) -> ObservedContainer:
    return ObservedContainer("c", state, last_state=Terminated(1) if last else None)


@pytest.mark.parametrize(("policy", "states", "terminal", "want"), [
    ("Always", [obs(CREATED)], False, "Pending"),
    ("Always", [obs(R), obs(CREATED)], False, "Pending"),            # one not started yet
    ("Always", [obs(R), obs(W, last=True)], False, "Running"),       # one in back-off
    ("Always", [obs(W, last=True)], False, "Running"),               # restarting
    ("Always", [obs(Terminated(0)), obs(Terminated(1))], False, "Running"),
    ("Always", [obs(Terminated(0))], False, "Running"),               # restarting, not done
    ("Always", [obs(Terminated(0)), obs(Terminated(137))], True, "Failed"),
    ("Always", [obs(Terminated(0))], True, "Succeeded"),
    ("Never", [obs(Terminated(0)), obs(Terminated(0))], False, "Succeeded"),
    ("Never", [obs(Terminated(0)), obs(Terminated(2))], False, "Failed"),
    ("Never", [obs(R), obs(Terminated(2))], False, "Running"),
    ("OnFailure", [obs(Terminated(0))], False, "Succeeded"),
    ("OnFailure", [obs(Terminated(0)), obs(Terminated(1))], False, "Running"),
    ("OnFailure", [obs(W, last=True), obs(Terminated(0))], False, "Running"),
    ("Never", [], False, "Pending"),
])
def test_phase_as_kubelet_get_phase(policy: str, states: list[ObservedContainer], terminal: bool,
                                    want: str) -> None:
    assert phase(policy, states, terminal=terminal) == want


# --------------------------------------------------------------------------- status
def test_new_pod_is_pending_with_containers_creating() -> None:
    st = pod_status(mkpod("web", "side"), [], now=T0, host_ip="192.168.50.11")
    assert st["phase"] == "Pending"
    assert st["startTime"] == ts(T0)
    assert st["hostIP"] == "192.168.50.11" and st["hostIPs"] == [{"ip": "192.168.50.11"}]
    assert "podIP" not in st
    assert [c["type"] for c in st["conditions"]] == ["Initialized", "Ready", "ContainersReady",
                                                      "PodScheduled"]
    for kind in ("Ready", "ContainersReady"):
        assert cond(st, kind) == {"type": kind, "status": "False", "reason": "ContainersNotReady",
                                  "message": "containers with unready status: [web side]",
                                  "lastTransitionTime": ts(T0)}
    assert cond(st, "Initialized")["status"] == "True"
    assert cond(st, "PodScheduled")["status"] == "True"
    assert [c["name"] for c in st["containerStatuses"]] == ["side", "web"]
    assert st["containerStatuses"][1] == {
        "name": "web", "state": {"waiting": {"reason": "ContainerCreating"}}, "lastState": {},
        "ready": False, "restartCount": 0, "image": "img/web:1", "started": False, "imageID": ""}


def test_running_ready_pod_and_its_container_status() -> None:
    st = pod_status(mkpod(), [running(restarts=2)], now=T0 + 10, pod_ip="10.244.1.5",
                    host_ip="192.168.50.11")
    assert st["phase"] == "Running"
    assert st["podIP"] == "10.244.1.5" and st["podIPs"] == [{"ip": "10.244.1.5"}]
    assert cond(st, "Ready") == {"type": "Ready", "status": "True", "lastTransitionTime": ts(T0 + 10)}
    assert cond(st, "ContainersReady")["status"] == "True"
    assert st["containerStatuses"] == [{
        "name": "web", "state": {"running": {"startedAt": ts(T0)}}, "lastState": {}, "ready": True,
        "restartCount": 2, "image": "img/web:1", "started": True,
        "imageID": "docker-pullable://img/web@sha256:ab", "containerID": "docker://web-id"}]


def test_one_unready_container_makes_the_pod_unready() -> None:
    st = pod_status(mkpod("a", "b", "c"), [running("a"), running("b", ready=False), running("c")],
                    now=T0)
    assert st["phase"] == "Running"
    assert cond(st, "Ready")["message"] == "containers with unready status: [b]"
    assert [c["ready"] for c in st["containerStatuses"]] == [True, False, True]


def test_only_a_running_container_is_ready() -> None:
    gone = ObservedContainer("web", Terminated(0, finished_at=T0), ready=True)
    st = pod_status(mkpod(), [gone], now=T0)
    assert st["containerStatuses"][0]["ready"] is False
    assert cond(st, "Ready")["status"] == "False"


def test_crash_loop_container_is_reported_waiting_with_its_last_exit() -> None:
    d = decide_restart(mkpod(), "web", Terminated(1, finished_at=T0 + 5), now=T0 + 6,
                       backoff=Backoff(20.0, T0))
    assert d.waiting is not None
    o = held(ObservedContainer("web", Terminated(1, "Error", started_at=T0, finished_at=T0 + 5,
                                                 container_id="docker://old"),
                               restart_count=3, ready=True, container_id="docker://old"), d.waiting)
    st = pod_status(mkpod(), [o], now=T0 + 6)
    [cs] = st["containerStatuses"]
    assert cs["state"] == {"waiting": {"reason": "CrashLoopBackOff", "message":
                                       "back-off 20s restarting failed container=web "
                                       "pod=web-abc_default(uid-1)"}}
    assert cs["lastState"] == {"terminated": {"exitCode": 1, "reason": "Error", "startedAt": ts(T0),
                                              "finishedAt": ts(T0 + 5), "containerID": "docker://old"}}
    assert cs["ready"] is False and cs["restartCount"] == 3
    assert st["phase"] == "Running"  # Always: restarting, not Pending
    assert cond(st, "Ready")["status"] == "False"


def test_completed_and_failed_pods_conditions() -> None:
    ok = pod_status(mkpod(policy="Never"), [exited(code=0)], now=T0)
    assert ok["phase"] == "Succeeded"
    assert cond(ok, "Ready")["reason"] == "PodCompleted" and cond(ok, "Ready")["status"] == "False"
    assert cond(ok, "ContainersReady")["reason"] == "PodCompleted"
    assert cond(ok, "Initialized") == {"type": "Initialized", "status": "True",
                                       "reason": "PodCompleted", "lastTransitionTime": ts(T0)}
    assert ok["containerStatuses"][0]["state"]["terminated"]["reason"] == "Completed"
    bad = pod_status(mkpod(policy="Never"), [exited(code=3)], now=T0)
    assert bad["phase"] == "Failed" and cond(bad, "Ready")["reason"] == "PodFailed"
    assert bad["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 3


def test_terminal_phase_never_changes() -> None:
    st = pod_status(mkpod(status={"phase": "Succeeded"}), [running()], now=T0)
    assert st["phase"] == "Succeeded"


def test_transition_times_start_time_and_foreign_conditions_are_kept() -> None:
    first = pod_status(mkpod(), [running(ready=False)], now=T0, pod_ip="10.244.1.5")
    first["conditions"].append({"type": "example.com/Gate", "status": "True",
                                "lastTransitionTime": ts(T0 - 100)})
    first["reason"], first["message"] = "Because", "kept with the phase"
    later = pod_status(mkpod(status=first), [running(ready=False)], now=T0 + 50, pod_ip="10.244.1.5")
    assert later["startTime"] == ts(T0)
    assert cond(later, "Ready")["lastTransitionTime"] == ts(T0)
    assert cond(later, "example.com/Gate")["lastTransitionTime"] == ts(T0 - 100)
    assert later["reason"] == "Because"
    assert not status_changed(first, later)
    ready = pod_status(mkpod(status=later), [running()], now=T0 + 60, pod_ip="10.244.1.5")
    assert cond(ready, "Ready") == {"type": "Ready", "status": "True", "lastTransitionTime": ts(T0 + 60)}
    assert cond(ready, "Initialized")["lastTransitionTime"] == ts(T0)  # unchanged one kept
    assert status_changed(later, ready)


def test_scheduler_written_pod_scheduled_keeps_its_time() -> None:
    sched = {"conditions": [{"type": "PodScheduled", "status": "True",
                             "lastTransitionTime": ts(T0 - 5)}]}
    st = pod_status(mkpod(status=sched), [], now=T0)
    assert cond(st, "PodScheduled")["lastTransitionTime"] == ts(T0 - 5)
    assert len([c for c in st["conditions"] if c["type"] == "PodScheduled"]) == 1


def test_a_deleting_pod_is_not_ready_and_ends_terminal() -> None:
    pod = mkpod(deleting_at=T0 + 30)
    st = pod_status(pod, [running()], now=T0)
    assert st["phase"] == "Running"
    assert st["containerStatuses"][0]["ready"] is False
    assert cond(st, "Ready")["status"] == "False"
    killed = pod_status(pod, [exited(code=137)], now=T0 + 31)
    assert killed["phase"] == "Failed"
    assert pod_status(pod, [exited(code=0)], now=T0 + 31)["phase"] == "Succeeded"


# --------------------------------------------------------------------------- change detection
def test_status_changed_ignores_precision_and_recomputed_transition_times() -> None:
    st = pod_status(mkpod(), [running()], now=T0, pod_ip="10.244.1.5")
    same = pod_status(mkpod(), [running()], now=T0 + 99, pod_ip="10.244.1.5")  # fresh times
    assert cond(same, "Ready")["lastTransitionTime"] != cond(st, "Ready")["lastTransitionTime"]
    assert status_changed(st, same)  # startTime is not a recomputed condition time
    same["startTime"] = st["startTime"]
    assert not status_changed(st, same)
    precise = {**st, "startTime": st["startTime"].replace("Z", ".000000Z")}
    assert not status_changed(precise, st)
    reordered = {**st, "conditions": list(reversed(st["conditions"]))}
    assert not status_changed(reordered, st)
    blanks = {**st, "message": "", "reason": None, "podIPs": st["podIPs"], "nominated": []}
    assert not status_changed(blanks, st)


@pytest.mark.parametrize("change", ["ready", "restart", "ip", "phase", "exit"])
def test_status_changed_sees_real_changes(change: str) -> None:
    base = pod_status(mkpod(), [running()], now=T0, pod_ip="10.244.1.5")
    o, ip = running(), "10.244.1.5"
    if change == "ready":
        o = running(ready=False)
    elif change == "restart":
        o = running(restarts=1)
    elif change == "ip":
        ip = "10.244.1.6"
    elif change == "exit":
        o = exited(code=1)
    new = pod_status(mkpod(status=base), [o], now=T0 + 1, pod_ip=ip)
    if change == "phase":
        new["phase"] = "Failed"
    assert status_changed(base, new)
    assert not status_changed(base, pod_status(mkpod(status=base), [running()], now=T0 + 1,
                                               pod_ip="10.244.1.5"))


# --------------------------------------------------------------------------- deletion
def test_grace_period_in_effect() -> None:
    assert grace_period(mkpod()) == 30
    assert grace_period(mkpod(spec_grace=5)) == 5
    assert grace_period(mkpod(spec_grace=5, grace=2)) == 2
    assert grace_period(mkpod(spec_grace=5, grace=0)) == 0


def test_termination_plan_waits_at_most_until_the_deadline() -> None:
    on_time = termination_plan(mkpod(deleting_at=T0 + 30, grace=30), now=T0)
    assert (on_time.grace, on_time.sigterm_at, on_time.sigkill_at) == (30, T0, T0 + 30)
    late = termination_plan(mkpod(deleting_at=T0 + 30, grace=30), now=T0 + 20)
    assert (late.sigterm_at, late.sigkill_at) == (T0 + 20, T0 + 30)
    past = termination_plan(mkpod(deleting_at=T0 + 30, grace=30), now=T0 + 40)
    assert past.sigkill_at == T0 + 40
    short = termination_plan(mkpod(deleting_at=T0 + 600, spec_grace=3), now=T0)
    assert short.sigkill_at == T0 + 3
    assert termination_plan(mkpod(), now=T0).sigkill_at == T0 + 30


def test_ephemeral_containers_have_their_own_statuses_and_leave_the_phase_alone() -> None:
    pod = mkpod()
    pod["spec"]["ephemeralContainers"] = [{"name": "debugger-a", "image": "busybox"},
                                          {"name": "debugger-b", "image": "busybox"}]
    st = pod_status(pod, [running(), running("debugger-a"), exited("debugger-b", 3)], now=T0)
    assert st["phase"] == "Running" and [c["name"] for c in st["containerStatuses"]] == ["web"]
    a, b = st["ephemeralContainerStatuses"]
    assert (a["name"], a["ready"], "running" in a["state"]) == ("debugger-a", False, True)  # never ready
    assert (b["name"], b["state"]["terminated"]["exitCode"]) == ("debugger-b", 3)
    assert cond(st, "Ready")["status"] == "True"  # only the app containers count
    assert "ephemeralContainerStatuses" not in pod_status(mkpod(), [running()], now=T0)
