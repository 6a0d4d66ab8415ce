"""The data plane's background sync with the control plane, over gRPC. Serving never waits on any of it.

- ``channel``: the one way to open a channel to the control plane (TLS, mTLS, the shared options).
- ``discovery``: the snapshot stream: receive, prepare off the loop, adopt on it, persist, ACK or NACK.
- ``leases``: budget grants and rate-limit shares, renewed on an interval (sooner when a budget runs short).
- ``usage_shipper``: ships the usage spool in batches and applies the acknowledgements.
- ``health_report``: the deployments' health as it travels on the discovery stream.
"""
