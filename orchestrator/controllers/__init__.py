"""The control loops around the pure decisions, one module per controller.

    base          the worker loop every controller shares: a work queue of keys, workers,
                  per-key rate-limited retries, a clean stop, and what a fenced write means
    informers     the shared informers (one list+watch per kind, with the indexes controllers use)
    events        the event recorder: Kubernetes' Events in etcd on a TTL lease, de-duplicated
    podcontrol    creating and deleting pods the way controllers must (fenced, graceful)
    scheduler     unscheduled pods -> bindings, several per etcd transaction
    replication_manager  RCs -> pods (expectations, slow start, burst, adoption, cascade)
    endpoints_controller Services with a selector -> Endpoints
    node_lifecycle_controller  heartbeats -> Ready=Unknown, pods not ready, eviction, pod GC

Decisions stay in `orchestrator.scheduling`, `replication`, `endpoints` and `node_lifecycle`;
these modules only read informers, call the decision and write its result with the leader's
fence (`guards`). Every write a controller makes is fenced: a `Fenced` error means this
process is no longer the leader, and the controller reports it (`on_fenced`) and stops acting.
"""
