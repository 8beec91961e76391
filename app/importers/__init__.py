"""Importers: clinical data written by other systems, loaded through TrialDesk's own checks."""
