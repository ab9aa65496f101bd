"""callaffect: per-speaker valence/arousal over time from recorded support calls."""

__version__ = "0.1.0"
