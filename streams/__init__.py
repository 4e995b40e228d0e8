"""Faust stream processors that turn telemetry and detections into grid cases (issue #4)."""
