"""The thin orchestrator: Pods, ReplicationControllers, scheduler, endpoints controller and the
node agent's pod runtimes (Docker or plain namespaces). Not built yet: no issue asks for it so
far; the networking core (`netplane`) and stats (`stats`) come first."""
