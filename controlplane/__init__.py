"""The control plane: stores policy, compiles it into per-region snapshots, pushes them to data planes."""
