"""edgenas: neural architecture search for networks that are accurate and fast on their device."""

__version__ = "0.1.0"
