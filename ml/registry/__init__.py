"""The model registry, model artifacts, DVC pinning, provenance and reproduction of a version."""
