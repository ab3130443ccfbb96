"""Dagster assembly: definitions, jobs, schedules, sensors and deployment profiles."""
