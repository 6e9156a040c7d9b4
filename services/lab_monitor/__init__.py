"""Lab monitor: blood counts and liver tests (L1-L6) and anti-drug antibodies (R15, R16, S2)."""
