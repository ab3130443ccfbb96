"""Where operator alerts go: one webhook URL (Slack incoming webhook or anything that takes its JSON)."""

from __future__ import annotations

import logging

import dagster as dg
from pydantic import Field

from ml.alerts import Alert, AlertDeliveryError, post_alert


class AlertsResource(dg.ConfigurableResource):
    """Posts alerts to `webhook_url`; with none configured, alerts are only logged (alerts are off)."""

    webhook_url: str = Field(
        default="",
        description="Incoming-webhook URL that alerts are POSTed to as JSON; empty: alerts are only logged.",
    )
    ui_url: str = Field(
        default="http://127.0.0.1:3000", description="Base URL of the Dagster UI, for links in alerts."
    )
    timeout_seconds: float = Field(default=5.0, gt=0, description="How long one attempt waits for an answer.")
    attempts: int = Field(
        default=3, ge=1, description="Tries per alert in one sensor tick; a later tick tries again."
    )

    @property
    def enabled(self) -> bool:
        return bool(self.webhook_url)

    def deliver(self, alert: Alert, log: logging.Logger | dg.DagsterLogManager) -> bool:
        """True once the alert was accepted (or logged, with no webhook); False logs the error."""
        if not self.enabled:
            log.info(f"alert (no webhook configured, PLATFORM_ALERT_WEBHOOK_URL): {alert.text}")
            return True
        try:
            post_alert(
                self.webhook_url, alert.payload(), timeout=self.timeout_seconds, attempts=self.attempts
            )
        except AlertDeliveryError as exc:
            log.error(f"{exc}; the alert is sent again on the next tick: {alert.title}")
            return False
        log.info(f"alert sent: {alert.title}")
        return True
