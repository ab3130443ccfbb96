"""Development tooling: the demo, the simulation and local servers for tests. Never imported by the product, never in an image."""
