"""TrialDesk: an electronic data capture server for clinical trials."""

__version__ = "0.1.0"
