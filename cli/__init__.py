"""gatectl: the command-line client of Tollway's control plane, and the launcher of its servers."""
