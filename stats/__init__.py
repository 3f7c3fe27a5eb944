"""Container resource stats, cAdvisor-compatible: a housekeeping collector over cgroup readers
(C through cffi, pure-Python fallback), discovery sources, and an HTTP/Prometheus server.

Series carry cAdvisor's labels plus the `namespace`, `pod` and `container` that kubelet's
/metrics/cadvisor adds; pods' own cgroups are reported, and so is the root cgroup `/`.

For the node agent:
    c = Collector(discover=DockerSource(), interval=1.0).start()
    h = serve(c, "0.0.0.0", 4194)      # or mount StatsAPI(c).handle in another server
    ...; h.stop(); c.stop()
"""
