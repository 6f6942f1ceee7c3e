"""The monitor: owns sessions, drains them, turns the C core's totals into profiles."""
