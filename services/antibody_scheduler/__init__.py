"""Antibody-test scheduler: owns every ``antibody_test.due`` (S1, R14, R15, R17) and S3."""
