"""Alerts: budget and rate-limit events, stored durably and delivered to the tenants' webhooks.

- ``rules``: when an event fires (pure): a budget's soft threshold crossed, a budget exhausted, a rate-limit scope
  refusing for longer than a threshold; and each event's id, derived from what it is about, so firing twice is
  writing the same document twice.
- ``events``: the stored event and its deliveries (JSON in the store under ``/tollway/alerts/events/{id}``).
- ``webhooks``: one signed delivery attempt (HMAC-SHA256 of ``timestamp.body``) and where secrets come from.
- ``duty``: ``AlertDuty``, the control plane's background task that the ledger and the lease service feed, which
  records new events and delivers pending ones with exponential back-off (at least once, resumed after a
  restart). It keeps its evaluation in one place, so several control-plane replicas can run it as a singleton.
"""
