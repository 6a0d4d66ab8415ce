"""Commands that read what happened: usage, reports, alerts, the audit chain, compliance."""
