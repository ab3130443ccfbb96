"""Fakes of services that cannot run in the tests (a Kubernetes API server)."""
