"""Maintenance jobs over the stored content: garbage collection (``gc``), integrity
scrubbing (``scrub``) and per-namespace retention (``retention``).

Each runs from the CLI (``assay gc``, ``assay scrub``, ``assay retention``) and takes the
database and blob store; none imports the HTTP layer.
"""
