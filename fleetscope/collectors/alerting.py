"""Alerts on incident changes, sent as Alertmanager webhook notifications.

The payload is the one Alertmanager's ``webhook_config`` receiver sends (version ``"4"``: ``status``,
``receiver``, ``groupLabels``, ``commonLabels``, ``commonAnnotations``, ``externalURL``, ``groupKey``,
``truncatedAlerts`` and ``alerts``, each alert with ``status``, ``labels``, ``annotations``,
``startsAt``, ``endsAt``, ``generatorURL`` and ``fingerprint``), so any receiver written for
Alertmanager's webhooks (chat bridges, paging adapters, ticketing hooks) takes fleetscope's alerts as
they are. An incident that opens or reopens is sent as ``firing``; one that resolves as ``resolved``.

Delivery never blocks the collector for long and never loses a notification to one failed POST: each
send has a timeout, and what could not be delivered stays queued (bounded, oldest dropped and counted)
and is retried on the next cycle.
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter

from fleetscope.collectors.incidents import OPENED, REOPENED, RESOLVED, Change

log = logging.getLogger(__name__)

#: Alertmanager's "zero" end time for an alert still firing (Go's zero time.Time).
_STILL_FIRING = "0001-01-01T00:00:00Z"

#: Notifications kept for retry per receiver before the oldest is dropped.
QUEUE_LIMIT = 1000


def _rfc3339(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def notification(change: Change, receiver: str = "fleetscope", external_url: str = "") -> dict[str, Any]:
    """The Alertmanager webhook payload (version 4) for one incident change.

    Args:
        change: an ``opened``, ``reopened`` or ``resolved`` change from the incident store.
        receiver: the receiver name the payload carries.
        external_url: where the console runs (``externalURL`` and each alert's ``generatorURL``).

    Returns:
        A JSON-ready dictionary.

    Raises:
        ValueError: the change is an update, which is not a notification.
    """
    if change.kind not in (OPENED, REOPENED, RESOLVED):
        raise ValueError(f"an incident that was {change.kind} is not notified")
    incident = change.incident
    status = "resolved" if change.kind == RESOLVED else "firing"
    top = (incident.report.get("root_causes") or [{}])[0]
    labels = {"alertname": "FleetscopeIncident", "severity": "critical", "incident": incident.fingerprint}
    for name, value in (("layer", incident.layer), ("node", incident.node), ("gpu", incident.gpu)):
        if value is not None:
            labels[name] = str(value)
    annotations = {"summary": incident.summary}
    for name in ("action", "certainty"):
        if top.get(name):
            annotations[name] = str(top[name])
    ends = _rfc3339(incident.resolved_at) if status == "resolved" and incident.resolved_at else _STILL_FIRING
    alert = {
        "status": status,
        "labels": labels,
        "annotations": annotations,
        "startsAt": _rfc3339(incident.first_seen),
        "endsAt": ends,
        "generatorURL": external_url,
        "fingerprint": incident.fingerprint,
    }
    return {
        "version": "4",
        "groupKey": f'{{}}:{{incident="{incident.fingerprint}"}}',
        "truncatedAlerts": 0,
        "status": status,
        "receiver": receiver,
        "groupLabels": {"incident": incident.fingerprint},
        "commonLabels": labels,
        "commonAnnotations": annotations,
        "externalURL": external_url,
        "alerts": [alert],
    }


class WebhookSender:
    """Posts incident changes to Alertmanager-style webhook receivers.

    Args:
        urls: receiver URLs (``http://`` or ``https://``); each gets every notification.
        timeout: seconds for one POST.
        external_url: the console's URL, put into each payload.
        registry: where the sender's own metrics go.

    Raises:
        ValueError: a URL is not http(s).
    """

    def __init__(
        self,
        urls: Sequence[str],
        timeout: float = 5.0,
        external_url: str = "",
        registry: CollectorRegistry | None = None,
    ) -> None:
        for url in urls:
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"a webhook URL must start with http:// or https://, got {url!r}")
        self.timeout = timeout
        self.external_url = external_url
        self._queues: dict[str, deque[dict[str, Any]]] = {url: deque() for url in urls}
        self._sent = Counter(
            "fleetscope_collector_alerts_sent_total",
            "Alert notifications delivered to a webhook receiver.",
            registry=registry,
        )
        self._failed = Counter(
            "fleetscope_collector_alert_send_failures_total",
            "POSTs that found a webhook receiver unreachable or failing (5xx); the notification stays queued",
            registry=registry,
        )
        self._refused = Counter(
            "fleetscope_collector_alerts_refused_total",
            "Notifications a webhook receiver refused with an HTTP 4xx (dropped, not retried).",
            registry=registry,
        )
        self._dropped = Counter(
            "fleetscope_collector_alerts_dropped_total",
            f"Notifications dropped because a receiver's queue held {QUEUE_LIMIT} undelivered ones.",
            registry=registry,
        )

    def queued(self) -> int:
        """Notifications waiting for delivery, over all receivers."""
        return sum(len(queue) for queue in self._queues.values())

    def send(self, changes: Sequence[Change]) -> None:
        """Queue the notifications for these changes (updates are skipped) and deliver what is queued.

        A receiver that fails keeps its queue, in order, for the next call; others are not held up.
        """
        payloads = [notification(c, external_url=self.external_url) for c in changes if c.kind != "updated"]
        for url, queue in self._queues.items():
            for payload in payloads:
                if len(queue) == QUEUE_LIMIT:
                    queue.popleft()
                    self._dropped.inc()
                queue.append(payload)
            while queue:
                outcome = self._post(url, queue[0])
                if outcome == "retry":
                    break
                queue.popleft()
                (self._sent if outcome == "sent" else self._refused).inc()

    def _post(self, url: str, payload: dict[str, Any]) -> str:
        """POST one payload: ``sent``, ``retry`` (unreachable or a 5xx) or ``refused`` (a 4xx: the
        receiver will never take this payload, so retrying would only block the ones behind it)."""
        request = urllib.request.Request(
            url,
            data=json.dumps(payload).encode(),
            headers={"Content-Type": "application/json", "User-Agent": "fleetscope-collector"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                response.read()
            return "sent"
        except urllib.error.HTTPError as exc:
            if 400 <= exc.code < 500:
                log.error("webhook %s refused a notification (HTTP %d); dropped", url, exc.code)
                return "refused"
            self._failed.inc()
            log.warning("webhook %s answered HTTP %d, will retry next cycle", url, exc.code)
            return "retry"
        except (urllib.error.URLError, OSError) as exc:
            self._failed.inc()
            log.warning("webhook %s not reached, will retry next cycle: %s", url, exc)
            return "retry"
