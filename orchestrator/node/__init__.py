"""The node runtime: runs the pods bound to this host (our kubelet): pod networking, runtimes, lifecycle."""
