"""Replay a recorded log: offline through the cores (the golden), or online through NATS."""
