"""GridHub: streaming IoT and video-sensor ingestion for urban grid management (网格化管理)."""

from core import __version__

__all__ = ["__version__"]
