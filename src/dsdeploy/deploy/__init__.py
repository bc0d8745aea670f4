"""Deployment artifacts rendered from a plan: Dockerfile and compose file, a hardened
systemd unit, Kubernetes manifests (LeaderWorkerSet when one machine is not enough)."""
