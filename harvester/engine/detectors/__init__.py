"""Detectors: each turns a rule's matched posts (or the whole stream) into `Signal`s with evidence."""
