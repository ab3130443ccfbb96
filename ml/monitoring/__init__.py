"""Monitoring of the served model: feature drift, live performance and the monitoring tables."""
