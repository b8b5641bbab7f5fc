"""Offline bundles: models carried across an air gap as one tar (docs/bundles.md).

- ``layout``: the OCI image layout in a tar, written and read as a stream (pure);
- ``export``: ``assay export``: models, blobs and referrers from a registry into a bundle;
- ``contents``: what a bundle holds, checked before anything is pushed;
- ``importer``: ``assay import``: a bundle into any OCI registry, digests kept;
- ``adoption``: on assay, carried verification results recorded instead of a new run;
- ``commands``: the two commands' output and errors.
"""
