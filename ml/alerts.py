"""Operator alerts: one message shape and one way to deliver it, to one webhook URL.

A message is a Slack incoming-webhook body (`text` for notifications and plain
receivers, `blocks` for Slack's layout, as dagster-slack builds them), plus a `platform`
object with the same facts as fields (kind, asset, partitions, run id, UI link), so
tests and other tools read alerts without parsing prose. Posting uses the standard
library: the platform needs no Slack client to reach a webhook.
"""

from __future__ import annotations

import http.client
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

ALERT_KINDS = ("run_failure", "check_failure", "quarantine")
MAX_FIELD = 500
MAX_ERROR = 1500
"""A step's error is kept longer than other fields: an ingestion error names every bad file."""
"""Longest error text or metadata value an alert carries; the UI link leads to the rest."""
SLACK_SECTION_LIMIT = 3000


class AlertDeliveryError(RuntimeError):
    """The webhook did not accept an alert after the last attempt; the message names the URL."""


def shorten(text: str, limit: int = MAX_FIELD) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def describe_url(url: str) -> str:
    """The URL as safe to log: webhook URLs (Slack's) carry their secret in the path and query."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    segments = [s for s in parts.path.split("/") if s]
    path = f"/{segments[0]}" if segments else ""
    hidden = len(segments) > 1 or parts.query
    return f"{parts.scheme}://{host}{path}{'/…' if hidden else ''}"


def run_url(ui_url: str, run_id: str) -> str:
    return f"{ui_url.rstrip('/')}/runs/{run_id}"


def asset_url(ui_url: str, asset: str, view: str = "") -> str:
    quoted = "/".join(urllib.parse.quote(part) for part in asset.split("/"))
    return f"{ui_url.rstrip('/')}/assets/{quoted}{f'?view={view}' if view else ''}"


@dataclass(frozen=True)
class PartitionSpan:
    """The partitions an alert is about: one key (first == last) or a range run's first and last."""

    first: str
    last: str

    @property
    def label(self) -> str:
        return self.first if self.first == self.last else f"{self.first}..{self.last}"


@dataclass(frozen=True)
class Alert:
    kind: str
    title: str
    """One line, as dagster-slack's: `Job "daily_ingestion" failed!`."""
    body: str
    url: str
    asset: str | None = None
    """The asset concerned most (a run's failed one), as `bronze/flights`."""
    assets: tuple[str, ...] = ()
    partitions: PartitionSpan | None = None
    run_id: str | None = None
    details: Mapping[str, object] = field(default_factory=dict)
    """Kind-specific facts (job, check, reason, path, ...), JSON-serialisable."""

    def __post_init__(self) -> None:
        if self.kind not in ALERT_KINDS:
            raise ValueError(f"alert kind {self.kind!r} is not one of {', '.join(ALERT_KINDS)}")

    def facts(self) -> list[tuple[str, str]]:
        facts = []
        if self.assets or self.asset:
            facts.append(("Asset", ", ".join(self.assets or (self.asset or "",))))
        if self.partitions:
            facts.append(("Partition", self.partitions.label))
        facts.append(("Run", self.run_id or "none"))
        return facts

    @property
    def text(self) -> str:
        lines = [self.title, self.body, *(f"{name}: {value}" for name, value in self.facts()), self.url]
        return "\n".join(line for line in lines if line)

    def payload(self) -> dict[str, object]:
        blocks: list[dict[str, object]] = [
            {"type": "section", "text": {"type": "mrkdwn", "text": f"*{self.title}*"}},
        ]
        if self.body:
            body = shorten(self.body, SLACK_SECTION_LIMIT)
            blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": body}})
        fields = [{"type": "mrkdwn", "text": f"*{name}*\n`{value}`"} for name, value in self.facts()]
        blocks.append({"type": "section", "fields": fields})
        button = {"type": "button", "text": {"type": "plain_text", "text": "View in Dagster UI"}}
        blocks.append({"type": "actions", "elements": [{**button, "url": self.url}]})
        platform = {
            "kind": self.kind,
            "asset": self.asset,
            "assets": list(self.assets or ((self.asset,) if self.asset else ())),
            "partitions": (
                {"first": self.partitions.first, "last": self.partitions.last} if self.partitions else None
            ),
            "run_id": self.run_id,
            "url": self.url,
            "title": self.title,
            **self.details,
        }
        return {"text": self.text, "blocks": blocks, "platform": platform}


@dataclass(frozen=True)
class StepFailure:
    step: str
    error: str


def run_failure_alert(
    ui_url: str,
    *,
    job: str,
    run_id: str,
    assets: Iterable[str],
    failed_assets: Iterable[str],
    partitions: PartitionSpan | None,
    steps: Iterable[StepFailure],
    run_error: str,
    failed_checks: Iterable[str] = (),
) -> Alert:
    """A failed run: its failed steps' errors, or the run's own error when no step failed."""
    steps, failed, checks = list(steps), list(failed_assets), list(failed_checks)
    reasons = [f"{s.step}: {shorten(s.error, MAX_ERROR)}" for s in steps] or [shorten(run_error, MAX_ERROR)]
    lines = [f"Error: {reasons[0]}", *reasons[1:]]
    if checks:
        lines.append(f"Blocking check(s) failed: {', '.join(checks)}")
    every = list(dict.fromkeys([*failed, *assets]))
    concerned = failed[0] if failed else every[0] if every else None
    return Alert(
        kind="run_failure",
        title=f'Job "{job}" failed! `{run_id.split("-")[0]}`',
        body="\n".join(lines),
        url=run_url(ui_url, run_id),
        asset=concerned,
        assets=tuple(every),
        partitions=partitions,
        run_id=run_id,
        details={
            "job": job,
            "failed_assets": failed,
            "failed_steps": [s.step for s in steps],
            "errors": reasons,
            "failed_checks": checks,
        },
    )


def check_failure_alert(
    ui_url: str,
    *,
    asset: str,
    check: str,
    run_id: str | None,
    partitions: PartitionSpan | None,
    severity: str,
    description: str,
    metadata: Mapping[str, str],
) -> Alert:
    summary = {name: shorten(value, 200) for name, value in list(metadata.items())[:12]}
    lines = [shorten(description)] if description else []
    lines += [f"{name}: {value}" for name, value in summary.items()]
    return Alert(
        kind="check_failure",
        title=f'Check "{check}" on {asset} failed ({severity})!',
        body="\n".join(lines),
        url=run_url(ui_url, run_id) if run_id else asset_url(ui_url, asset, "checks"),
        asset=asset,
        assets=(asset,),
        partitions=partitions,
        run_id=run_id,
        details={"check": check, "severity": severity, "description": description, "metadata": summary},
    )


def quarantine_alert(
    ui_url: str,
    *,
    asset: str,
    dataset: str,
    day: str | None,
    source: str,
    destination: str,
    reason: str,
    run_id: str | None,
) -> Alert:
    return Alert(
        kind="quarantine",
        title=f"Landing file {source.rsplit('/', 1)[-1]} of {dataset} was quarantined!",
        body=f"Reason: {shorten(reason)}\nLanding file: {source}\nQuarantined to: {destination}",
        url=run_url(ui_url, run_id) if run_id else asset_url(ui_url, asset),
        asset=asset,
        assets=(asset,),
        partitions=PartitionSpan(day, day) if day else None,
        run_id=run_id,
        details={
            "dataset": dataset,
            "day": day,
            "source": source,
            "destination": destination,
            "reason": reason,
        },
    )


def post_alert(
    url: str,
    payload: Mapping[str, object],
    *,
    timeout: float = 5.0,
    attempts: int = 3,
    backoff: float = 0.5,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """POST the JSON body; retry what may pass on a later try (no answer, 429, 5xx), not a 4xx."""
    data = json.dumps(payload).encode()
    last, attempts = "", max(1, attempts)
    for attempt in range(1, attempts + 1):
        request = urllib.request.Request(
            url, data=data, method="POST", headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                response.read()
            return
        except urllib.error.HTTPError as exc:
            last = f"HTTP {exc.code}: {shorten(exc.read().decode(errors='replace'), 200)}"
            if exc.code != 429 and exc.code < 500:
                break
        except (OSError, http.client.HTTPException) as exc:
            last = f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}"
        if attempt < attempts:
            sleep(backoff * 2 ** (attempt - 1))
    raise AlertDeliveryError(
        f"alert webhook {describe_url(url)} did not accept the alert after {attempt} attempt(s): {last}"
    )


@dataclass(frozen=True)
class SeenFiles:
    """Which files were alerted already, by storage modification time, in a bounded cursor.

    Files written up to `LATE` seconds before the newest alerted one are still looked at
    (their names are kept), since a slow writer can finish a file after a faster one with
    a later time; older ones are history. On a sensor's first tick the watermark is its
    clock, so files of the last `LATE` seconds are alerted and older ones are not.
    """

    watermark: float
    names: Mapping[str, float] = field(default_factory=dict)

    LATE = 600.0

    @classmethod
    def parse(cls, cursor: str | None, now: float) -> SeenFiles:
        if not cursor:
            return cls(now)
        data = json.loads(cursor)
        return cls(float(data["watermark"]), {str(k): float(v) for k, v in data["names"].items()})

    def dump(self) -> str:
        return json.dumps({"watermark": self.watermark, "names": dict(sorted(self.names.items()))})

    def is_new(self, name: str, modified: float) -> bool:
        return modified > self.watermark - self.LATE and name not in self.names

    def with_alerted(self, name: str, modified: float) -> SeenFiles:
        watermark = max(self.watermark, modified)
        names = {**self.names, name: modified}
        return SeenFiles(watermark, {n: m for n, m in names.items() if m > watermark - self.LATE})
