"""biqa: blind image quality assessment research framework."""

__version__ = "0.1.0"
