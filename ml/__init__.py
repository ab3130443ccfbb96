"""Pure computation of the platform: no module here imports dagster."""
