"""The control plane's HTTP side: the admin API, usage and analytics endpoints, the dashboard, metrics.

- ``api``: ``create_admin_app``, the admin API of docs/admin-api.md (a thin shell over ``Repository``).
- ``usage_api`` and ``analytics_api``: spend and report endpoints over ``controlplane.usage``.
- ``dashboard``, ``dashboard_page``, ``charts``: the server-rendered dashboard at ``/dashboard``.
- ``alerts_api``: ``GET /admin/v1/alerts``, the events of ``controlplane.alerts`` (``gatectl alerts``).
- ``metrics``: the control plane's Prometheus metrics.
"""
