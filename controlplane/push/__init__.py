"""Pushing snapshots to the data planes, and what they report back.

- ``publisher``: list-then-watch the store, compile every region's snapshot off the loop, keep the latest.
- ``discovery``: the gRPC snapshot stream (ACK/NACK, heartbeats) and the ``Registry`` of data planes.
- ``fleet_health``: deployment health across the fleet, as the data planes report it (pure).
"""
