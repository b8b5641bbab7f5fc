"""The service layer: everything the HTTP handlers (and the CLI) ask of the registry.

``RegistryService`` groups one service per concern; each takes the database, the blob
store and the settings, and raises only ``registry.errors`` exceptions.
"""

from __future__ import annotations

from dataclasses import dataclass

from registry.db import Database
from registry.services.audit import AuditService
from registry.services.blobs import BlobService
from registry.services.catalog import CatalogService
from registry.services.events import EventService
from registry.services.identities import AccessService
from registry.services.manifests import ManifestService
from registry.services.models import ModelService
from registry.services.remote import RemoteService
from registry.services.uploads import UploadService
from registry.services.verification import VerificationService
from registry.settings import Settings
from registry.storage import BlobStore


@dataclass
class RegistryService:
    db: Database
    store: BlobStore
    settings: Settings

    def __post_init__(self):
        self.blobs = BlobService(self.db, self.store, self.settings)
        self.uploads = UploadService(self.db, self.store, self.settings)
        from registry.db.queue import JobQueue

        self.queue = JobQueue(self.db, lease_seconds=self.settings.job_lease_seconds)
        # Outgoing webhooks: changes write their events into the outbox (same transaction).
        self.events = EventService(self.db, self.store, self.settings, self.queue)
        self.models = ModelService(self.db, self.store, self.settings)
        self.manifests = ManifestService(self.db, self.store, self.settings, self.models,
                                         self.queue)
        self.catalog = CatalogService(self.db, self.store, self.settings)
        self.verification = VerificationService(self.db, self.store, self.settings,
                                                self.queue, self.uploads, self.manifests)
        self.manifests.policy = self.verification.policy
        # Verification on request (webhooks in), of this registry's models or other ones'.
        self.remote = RemoteService(self.db, self.store, self.settings, self.queue,
                                    self.verification, events=getattr(self, "events", None))
        self.manifests.events = self.verification.events = self.events
        # Identities, roles and the audit log (registry.api.guard guards every route).
        self.access = AccessService(self.db, self.store, self.settings)
        self.audit = AuditService(self.db, self.store, self.settings)
