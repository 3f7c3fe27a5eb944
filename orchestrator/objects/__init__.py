"""Kubernetes v1 objects as netplane stores and serves them.

**Representation: JSON dicts, typed by `TypedDict` views, read through accessor functions.**
Not frozen dataclasses, deliberately, although the house style prefers them for domain values:

* The API server (a later issue) must round-trip real kubectl manifests. `kubectl apply`
  GETs an object, diffs it against `last-applied-configuration` and PATCHes it; any field a
  dataclass did not model (volumeMounts, securityContext, tolerations, an annotation of a tool
  we never heard of) would be silently dropped on the way through and re-added on the next
  apply, forever. A dict keeps every field it was given.
* Kubernetes' own wire form *is* JSON with optional fields, defaulting and unknown-field
  warnings; modelling it as JSON lets validation report Kubernetes' exact field paths
  (`spec.template.spec.containers[0].ports[0].containerPort`) without a mapping layer.
* `TypedDict`s (`Pod`, `ReplicationController`, `Node`, `Service`, ...) give mypy the shape, so
  `pod["spec"]["containers"]` is checked, at no runtime cost and with no copy.

Pure logic that runs hot (the scheduler over 10,000 pods) does not walk dicts on every
decision: it extracts small frozen dataclasses once per object change (`Resources`, the
scheduler's `PodInfo`), which is where the house style's frozen values live.

Modules: `meta` (ObjectMeta, owner references, kinds), `names` (DNS-1123 and label syntax with
Kubernetes' messages), `quantity` (exact cpu/memory parsing), `selector` (label selectors),
`pod`, `node` (Node and Namespace), `replicationcontroller`, `service` (Service and Endpoints,
and the bridge to the proxy's model), `event` (Events and their de-duplication).
"""
