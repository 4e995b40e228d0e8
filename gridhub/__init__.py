"""GridHub: streaming IoT and video-sensor ingestion for urban grid management (网格化管理)."""

__version__ = "0.1.0"
