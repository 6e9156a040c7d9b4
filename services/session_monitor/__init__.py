"""Session monitor: the reaction window, baseline, hypersensitivity grading (R7-R13),
pre-infusion checks (R5, R6, R17, P1-P6) and monitoring (M1, M2)."""
