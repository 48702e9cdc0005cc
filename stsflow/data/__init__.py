"""Corpora: sources (hub, local files, the built-in generators) read and normalised to the two
record schemas (``corpora``), and the built-in corpora of the embedded default (``builtin``)."""
