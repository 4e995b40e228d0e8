"""The base every service stands on: settings, Kafka topics, metrics, lifecycle, credentials, city files."""

__version__ = "0.1.0"
