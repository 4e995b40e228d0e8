"""Simulators for the demo city: the sensor fleet (issue #3) and synthetic camera scenes (issue #5)."""
