"""Adverse events reported by clinicians (A1-A7): one alert per report."""
