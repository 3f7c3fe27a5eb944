"""The kubelet's decisions about one pod, as pure functions over plain data.

The node runtime observes containers (Docker or plain namespaces) and asks this module what
to do and what to report; nothing here does I/O or reads a clock (`now` is epoch seconds,
passed in). The rules are kubelet's:

* **Restarts** (`should_restart`, `decide_restart`): restartPolicy Always restarts every
  exit, OnFailure only non-zero exits, Never none. Repeated exits are held in crash-loop
  back-off like kubelet's `flowcontrol.Backoff` keyed per container: the first restart is
  immediate and opens a 10 s window; each later exit inside the window's life is held for the
  window, which doubles up to 300 s; a container that ran longer than 10 min before exiting
  starts over. Held containers are reported as waiting, reason `CrashLoopBackOff`, message
  "back-off 20s restarting failed container=web pod=web-abc_default(uid)". kubelet resets
  after twice its cap (600 s); here the three numbers are `BackoffPolicy` fields.
* **Status** (`pod_status`): phase as kubelet's getPhase, the kubelet-owned conditions
  (Initialized, Ready, ContainersReady, PodScheduled) with kubelet's reasons and messages and
  `lastTransitionTime` kept while a condition's status stays the same, podIP(s), hostIP(s),
  startTime (kept once set) and containerStatuses sorted by name. A terminal phase never
  changes again. `status_changed` says whether a new status is worth writing.
* **Deletion** (`grace_period`, `termination_plan`): a pod with `deletionTimestamp` is not
  ready; its containers get SIGTERM, then SIGKILL once min(grace, time left before the
  deletion deadline) has passed.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from orchestrator.objects import meta
from orchestrator.objects import pod as pods

StatusDict = dict[str, Any]

DEFAULT_GRACE_PERIOD = 30
KUBELET_CONDITIONS = ("Initialized", "Ready", "ContainersReady", "PodScheduled")
_TERMINAL = ("Succeeded", "Failed")


# --------------------------------------------------------------------------- observed state
@dataclass(frozen=True)
class Waiting:
    """Not running: being created (`ContainerCreating`), held (`CrashLoopBackOff`), or failed
    to start (`RunContainerError`, `ErrImagePull`...). `reason=""` is a created, unstarted
    container."""

    reason: str = "ContainerCreating"
    message: str = ""


@dataclass(frozen=True)
class Running:
    started_at: float


@dataclass(frozen=True)
class Terminated:
    exit_code: int
    reason: str = ""
    message: str = ""
    started_at: float | None = None
    finished_at: float | None = None
    container_id: str = ""


ContainerState = Waiting | Running | Terminated


@dataclass(frozen=True)
class ObservedContainer:
    """What the runtime knows of one spec container: its current instance's state, the
    previous instance's end, restarts so far and readiness (running, and the readiness probe
    passing if there is one). `container_id` is `docker://<id>` or `netplane://<id>`."""

    name: str
    state: ContainerState = field(default_factory=Waiting)
    last_state: Terminated | None = None
    restart_count: int = 0
    ready: bool = False
    container_id: str = ""
    image_id: str = ""


def terminated_reason(exit_code: int, *, oom_killed: bool = False) -> str:
    """The reason dockershim gives an exited container."""
    if oom_killed:
        return "OOMKilled"
    return "Completed" if exit_code == 0 else "Error"


def held(obs: ObservedContainer, waiting: Waiting) -> ObservedContainer:
    """`obs` reported as waiting (e.g. in back-off): a terminated instance moves to lastState."""
    last = obs.state if isinstance(obs.state, Terminated) else obs.last_state
    return replace(obs, state=waiting, last_state=last, ready=False)


# --------------------------------------------------------------------------- restarts
@dataclass(frozen=True)
class BackoffPolicy:
    initial: float = 10.0
    cap: float = 300.0
    reset_after: float = 600.0


@dataclass(frozen=True)
class Backoff:
    """One container's crash-loop state (kubelet's backoffEntry): the window the next exit is
    held for, and when the last restart was decided."""

    delay: float
    updated_at: float


@dataclass(frozen=True)
class RestartDecision:
    """`restart`: start the container now. Otherwise `at` is when it may be (None: never) and
    `waiting` what to report meanwhile. `backoff` is the state to keep for the container."""

    restart: bool
    at: float | None
    backoff: Backoff | None
    waiting: Waiting | None = None


def restart_policy(pod: Mapping[str, Any]) -> str:
    return pods.spec(pod).get("restartPolicy") or "Always"


def should_restart(policy: str, exit_code: int) -> bool:
    """Whether a container that exited with `exit_code` is restarted at all."""
    if policy == "Never":
        return False
    if policy == "OnFailure":
        return exit_code != 0
    return True


def pod_ref(pod: Mapping[str, Any]) -> str:
    """`name_namespace(uid)`, kubelet's format.Pod."""
    return f"{meta.name(pod)}_{meta.namespace(pod)}({meta.uid(pod)})"


def go_duration(seconds: float) -> str:
    """A duration as Go's time.Duration.String prints it: 10s, 1m20s, 5m0s, 1h0m0s, 500ms."""
    ns = round(seconds * 1e9)
    if ns == 0:
        return "0s"
    sign = "-" if ns < 0 else ""
    ns = abs(ns)
    if ns < 1_000_000_000:
        for unit, size in (("ms", 1_000_000), ("µs", 1_000), ("ns", 1)):
            if ns >= size:
                return sign + _frac(ns, size) + unit
    h, rest = divmod(ns, 3_600_000_000_000)
    m, rest = divmod(rest, 60_000_000_000)
    s = _frac(rest, 1_000_000_000) + "s"
    if h:
        return f"{sign}{h}h{m}m{s}"
    if m:
        return f"{sign}{m}m{s}"
    return sign + s


def _frac(value: int, unit: int) -> str:
    whole, part = divmod(value, unit)
    if not part:
        return str(whole)
    digits = str(part).rjust(len(str(unit)) - 1, "0").rstrip("0")
    return f"{whole}.{digits}"


def decide_restart(pod: Mapping[str, Any], container: str, exited: Terminated, *, now: float,
                   backoff: Backoff | None,
                   policy: BackoffPolicy = BackoffPolicy()) -> RestartDecision:
    """What to do about `container`, whose current instance ended as `exited`, at `now`.

    kubelet's doBackOff: held while `now - finished < backoff.delay`, unless the instance ran
    more than `reset_after` since the last restart (then the state starts over); otherwise
    restart now with the window doubled (or set to `initial` the first time). Call it on each
    sync; keep the returned `backoff` only when the restart is actually carried out."""
    if meta.is_deleting(pod) or not should_restart(restart_policy(pod), exited.exit_code):
        return RestartDecision(False, None, backoff)
    finished = exited.finished_at if exited.finished_at is not None else now
    fresh = backoff is None or finished - backoff.updated_at > policy.reset_after
    if not fresh and backoff is not None and now - finished < backoff.delay:
        msg = (f"back-off {go_duration(backoff.delay)} restarting failed "
               f"container={container} pod={pod_ref(pod)}")
        return RestartDecision(False, finished + backoff.delay, backoff,
                               Waiting("CrashLoopBackOff", msg))
    delay = policy.initial if fresh or backoff is None else min(backoff.delay * 2, policy.cap)
    return RestartDecision(True, now, Backoff(delay, now))


# --------------------------------------------------------------------------- deletion
def grace_period(pod: Mapping[str, Any]) -> int:
    """The grace period in effect: the deletion's, else the spec's, else 30 s."""
    g = meta.meta(pod).get("deletionGracePeriodSeconds")
    if g is None:
        g = pods.spec(pod).get("terminationGracePeriodSeconds")
    return DEFAULT_GRACE_PERIOD if g is None else max(0, int(g))


@dataclass(frozen=True)
class TerminationPlan:
    """SIGTERM at `sigterm_at`; SIGKILL whatever still runs at `sigkill_at`."""

    grace: int
    sigterm_at: float
    sigkill_at: float


def termination_plan(pod: Mapping[str, Any], *, now: float) -> TerminationPlan:
    """How to stop a pod at `now`. The wait is the grace period, shortened to what is left
    before `deletionTimestamp` (the deadline the API set: an agent that sees the deletion late,
    or restarts mid-way, does not wait the whole period again)."""
    grace = grace_period(pod)
    wait = float(grace)
    ts = meta.meta(pod).get("deletionTimestamp")
    if ts:
        wait = min(wait, max(0.0, meta.parse_time(ts).timestamp() - now))
    return TerminationPlan(grace, now, now + wait)


# --------------------------------------------------------------------------- status
def _t(seconds: float | None) -> str | None:
    return None if seconds is None else meta.from_epoch(seconds)


def _terminated_dict(t: Terminated) -> dict[str, Any]:
    d: dict[str, Any] = {"exitCode": t.exit_code}
    if t.reason:
        d["reason"] = t.reason
    if t.message:
        d["message"] = t.message
    d["startedAt"] = _t(t.started_at)
    d["finishedAt"] = _t(t.finished_at)
    if t.container_id:
        d["containerID"] = t.container_id
    return d


def _state_dict(s: ContainerState) -> dict[str, Any]:
    if isinstance(s, Running):
        return {"running": {"startedAt": _t(s.started_at)}}
    if isinstance(s, Terminated):
        return {"terminated": _terminated_dict(s)}
    w: dict[str, Any] = {}
    if s.reason:
        w["reason"] = s.reason
    if s.message:
        w["message"] = s.message
    return {"waiting": w}


def container_status(spec: Mapping[str, Any], obs: ObservedContainer, *,
                     deleting: bool) -> StatusDict:
    cs: StatusDict = {
        "name": obs.name,
        "state": _state_dict(obs.state),
        "lastState": ({"terminated": _terminated_dict(obs.last_state)}
                      if obs.last_state is not None else {}),
        "ready": obs.ready and isinstance(obs.state, Running) and not deleting,
        "restartCount": obs.restart_count,
        "image": spec.get("image") or "",
        "started": isinstance(obs.state, Running),
        "imageID": obs.image_id,  # required in v1 (kubelet sends "" until it knows): clients insist
    }
    if obs.container_id:
        cs["containerID"] = obs.container_id
    return cs


def phase(policy: str, observed: Sequence[ObservedContainer], *, terminal: bool) -> str:
    """kubelet's getPhase for a pod without init containers. `terminal`: the pod will not run
    again whatever its policy (it is being deleted), so stopped containers end it."""
    running = waiting = stopped = succeeded = 0
    for o in observed:
        if isinstance(o.state, Running):
            running += 1
        elif isinstance(o.state, Terminated):
            stopped += 1
            succeeded += o.state.exit_code == 0
        elif o.last_state is not None:
            stopped += 1
        else:
            waiting += 1
    if waiting:
        return "Pending"
    if running:
        return "Running"
    if not stopped:
        return "Pending"
    if terminal:
        return "Succeeded" if stopped == succeeded else "Failed"
    if policy == "Always":
        return "Running"
    if stopped == succeeded:
        return "Succeeded"
    return "Failed" if policy == "Never" else "Running"


def _go_list(names: Sequence[str]) -> str:
    return "[" + " ".join(names) + "]"


def _ready_conditions(spec_names: Sequence[str], statuses: Mapping[str, StatusDict],
                      ph: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(ContainersReady, Ready) as kubelet's GenerateContainersReadyCondition."""
    if ph in _TERMINAL:
        c: dict[str, Any] = {"status": "False",
                             "reason": "PodCompleted" if ph == "Succeeded" else "PodFailed"}
        return {"type": "ContainersReady", **c}, {"type": "Ready", **c}
    unready = [n for n in spec_names if not statuses[n]["ready"]]
    if not unready:
        return {"type": "ContainersReady", "status": "True"}, {"type": "Ready", "status": "True"}
    c = {"status": "False", "reason": "ContainersNotReady",
         "message": f"containers with unready status: {_go_list(unready)}"}
    return {"type": "ContainersReady", **c}, {"type": "Ready", **c}


def pod_status(pod: Mapping[str, Any], observed: Sequence[ObservedContainer], *, now: float,
               pod_ip: str = "", host_ip: str = "", terminal: bool | None = None) -> StatusDict:
    """The pod's v1 status from what the runtime observed, merged with its current status
    (kept: startTime, lastTransitionTime of unchanged conditions, a terminal phase, the phase's
    reason/message, conditions owned by others). Spec containers missing from `observed` are
    waiting in ContainerCreating. `terminal` defaults to "the pod is being deleted"."""
    current: Mapping[str, Any] = pods.status(pod)
    deleting = meta.is_deleting(pod)
    if terminal is None:
        terminal = deleting
    by_name = {o.name: o for o in observed}
    spec_containers = pods.spec(pod).get("containers") or []
    names = [c.get("name") or "" for c in spec_containers]
    obs = [by_name.get(n) or ObservedContainer(n) for n in names]
    statuses = {o.name: container_status(c, o, deleting=deleting)
                for c, o in zip(spec_containers, obs, strict=True)}

    ph = phase(restart_policy(pod), obs, terminal=terminal)
    old_phase = current.get("phase")
    if old_phase in _TERMINAL:
        ph = old_phase
    out: StatusDict = {"phase": ph}
    if ph == old_phase:
        for k in ("reason", "message"):
            if current.get(k):
                out[k] = current[k]

    initialized: dict[str, Any] = {"type": "Initialized", "status": "True"}
    if ph == "Succeeded":
        initialized["reason"] = "PodCompleted"
    containers_ready, ready = _ready_conditions(names, statuses, ph)
    ours = [initialized, ready, containers_ready, {"type": "PodScheduled", "status": "True"}]
    old_conds = {c.get("type"): c for c in current.get("conditions") or []}
    conds: list[dict[str, Any]] = [dict(c) for c in current.get("conditions") or []
                                   if c.get("type") not in KUBELET_CONDITIONS]
    for c in ours:
        old = old_conds.get(c["type"]) or {}
        since = old.get("lastTransitionTime") if old.get("status") == c["status"] else None
        c["lastTransitionTime"] = since or meta.from_epoch(now)
        conds.append(c)
    out["conditions"] = conds

    if host_ip:
        out["hostIP"] = host_ip
        out["hostIPs"] = [{"ip": host_ip}]
    if pod_ip:
        out["podIP"] = pod_ip
        out["podIPs"] = [{"ip": pod_ip}]
    out["startTime"] = current.get("startTime") or meta.from_epoch(now)
    out["containerStatuses"] = [statuses[n] for n in sorted(statuses)]
    ephemeral: dict[str, StatusDict] = {}
    for ec in pods.spec(pod).get("ephemeralContainers") or []:  # kubectl debug's: never ready, not in the phase
        name = str(ec.get("name") or "")
        ephemeral[name] = container_status(ec, replace(by_name.get(name) or ObservedContainer(name), ready=False),
                                           deleting=deleting)
    if ephemeral:
        out["ephemeralContainerStatuses"] = [ephemeral[n] for n in sorted(ephemeral)]
    return out


# --------------------------------------------------------------------------- change detection
_TIME_KEYS = frozenset({"startTime", "lastTransitionTime", "lastProbeTime", "startedAt",
                        "finishedAt"})


def _normalize(value: Any) -> Any:
    """Drop empty values, times to whole seconds, lists of named things sorted."""
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if v is None or v == "" or v == []:
                continue
            if k in _TIME_KEYS and isinstance(v, str):
                try:
                    v = meta.format_time(meta.parse_time(v))
                except ValueError:
                    pass
            out[k] = _normalize(v)
        return out
    if isinstance(value, list):
        items = [_normalize(v) for v in value]
        if all(isinstance(v, dict) and ("type" in v or "name" in v) for v in items):
            items.sort(key=lambda v: str(v.get("type", v.get("name"))))
        return items
    return value


def status_changed(current: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    """Whether `new` says something `current` does not: compared after normalizing both (empty
    values dropped, times at second precision, conditions and container statuses in a fixed
    order), ignoring conditions' lastTransitionTime / lastProbeTime: a condition that flipped
    differs in `status`, and a recomputed timestamp alone is not a change worth a write."""
    a = _normalize(copy.deepcopy(dict(current)))
    b = _normalize(copy.deepcopy(dict(new)))
    for c in (a.get("conditions") or []) + (b.get("conditions") or []):
        # a flip shows in `status`; the time alone is only ever recomputed
        c.pop("lastTransitionTime", None)
        c.pop("lastProbeTime", None)
    return bool(a != b)
