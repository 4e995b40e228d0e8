"""MQTT ingestion: authenticate, validate, normalise and produce device telemetry to Kafka (issue #3)."""
