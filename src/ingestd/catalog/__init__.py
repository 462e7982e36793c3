"""The catalog: every file's row, its timeline, the durable queue and the control plane."""
