"""The orchestrator: Kubernetes' object model and control plane, over netplane's etcd store.

Built so far — the pure, unit-tested layer and object storage (issue 9's foundation):

    objects/        v1 shapes (JSON dicts typed by TypedDicts) for Namespace, Node, Pod,
                    ReplicationController, Service, Endpoints, Event; quantities, label
                    selectors, name rules; the bridge to the proxy's Service model
    validation/     the one validation layer: defaults, Kubernetes' schemas, field-path errors;
                    and a fast read check for stored objects
    manifests       reading YAML/JSON manifests like `kubectl apply -f`
    workqueue       client-go's work queue (fair, stingy, delaying, rate limited)
    scheduling      the scheduler's decision over an incrementally kept cluster state, and
                    the binding / PodScheduled=False writes
    replication     the RC manager's decisions: claim, diff, deletion order, expectations
    endpoints       the endpoints controller's decision: Service + pods -> Endpoints
    node_lifecycle  heartbeat grace, pods not ready, eviction, orphans of deleted nodes
    storage         objects in etcd: create-only, optimistic updates, list/watch, leases
    informer        client-go's informer: a list+watch cache with indexes and handlers
    leader          leader election over an etcd lease; Fence.guards() for fenced writes

The loops around the pure decisions (scheduler, replication manager, endpoints and node
lifecycle controllers, under `netplane master`) and the node runtime come next; their writes
pass the leader's fence to `storage` (`guards=fence.guards()`).
Shape: etcd -> list+watch -> work queue of keys -> reconcile(key) over a snapshot -> writes.
"""
