"""rayscribe: distributed speech-to-text on Ray.

This package is the Ray-free core: settings, audio decoding, engines, result types and formatters.
Ray lives in ``actors/``, ``serve/`` and ``jobs/``, which are thin shells over it.
"""

__version__ = "0.1.0"
