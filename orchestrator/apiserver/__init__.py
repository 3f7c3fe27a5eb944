"""The Kubernetes-compatible API server: kubectl and the official clients drive netplane."""
