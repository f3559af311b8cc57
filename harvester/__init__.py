"""harvester: a self-hosted real-time social-media monitoring daemon."""

__version__ = "0.1.0"
