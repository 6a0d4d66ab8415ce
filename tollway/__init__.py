"""Contracts shared by the control plane and the data plane: generated protobuf code and key formats."""
