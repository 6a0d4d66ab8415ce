"""How gatectl shows things: tables and formats (output, wide_columns), YAML diffs, plans, progress."""
