"""The service layer: everything the HTTP handlers (and the CLI) ask of the registry.

``RegistryService`` groups one service per concern; each takes the database, the blob
store and the settings, plus the services it uses as required constructor arguments,
and raises only ``registry.errors`` exceptions. They are built in dependency order::

    queue -> classes -> workers -> events -> policies -> mirrors -> models -> manifests
      -> mirror_fetch -> regressions -> verification -> adoption -> remote

so every service is complete once constructed (nothing is wired in afterwards).
"""

from __future__ import annotations

from dataclasses import dataclass

from registry.db import Database
from registry.db.queue import JobQueue
from registry.services.adoption import AdoptionService
from registry.services.audit import AuditService
from registry.services.blobs import BlobService
from registry.services.catalog import CatalogService
from registry.services.class_upkeep import ClassUpkeep
from registry.services.classes import ClassService
from registry.services.events import EventService
from registry.services.hub import HubService
from registry.services.hub_commits import HubCommitService
from registry.services.identities import IdentityService
from registry.services.manifests import ManifestService
from registry.services.mirror_fetch import MirrorFetchService
from registry.services.mirrors import MirrorService
from registry.services.models import ModelService
from registry.services.policies import PolicyService
from registry.services.profiles import ProfileService
from registry.services.regressions import RegressionService
from registry.services.remote import RemoteService
from registry.services.uploads import UploadService
from registry.services.verification import VerificationService
from registry.services.workers import WorkerService
from registry.settings import Settings
from registry.storage import BlobStore


@dataclass
class RegistryService:
    db: Database
    store: BlobStore
    settings: Settings

    def __post_init__(self):
        db, store, settings = self.db, self.store, self.settings
        self.blobs = BlobService(db, store, settings)
        self.uploads = UploadService(db, store, settings)
        self.queue = JobQueue(db, lease_seconds=settings.job_lease_seconds)
        # Worker processes' presence, and what a queued model waits for.
        # Hardware classes: named selectors over what workers are and can run.
        self.classes = ClassService(db, store, settings)
        self.workers = WorkerService(db, store, settings, queue=self.queue,
                                     classes=self.classes)
        # Outgoing webhooks: changes write their events into the outbox (same transaction).
        self.events = EventService(db, store, settings, self.queue)
        self.policies = PolicyService(db, store, settings)
        # Mirror namespaces: which upstream each mirrors (the gate and the pull path ask).
        self.mirrors = MirrorService(db, store, settings)
        self.profiles = ProfileService(db, store, settings)
        self.models = ModelService(db, store, settings)
        self.manifests = ManifestService(db, store, settings, models=self.models,
                                         queue=self.queue, policies=self.policies,
                                         events=self.events, mirrors=self.mirrors,
                                         profiles=self.profiles)
        # Pull-through: what a mirror namespace lacks, fetched from its upstream.
        self.mirror_fetch = MirrorFetchService(db, store, settings, mirrors=self.mirrors,
                                               manifests=self.manifests, uploads=self.uploads,
                                               queue=self.queue)
        self.catalog = CatalogService(db, store, settings)
        # The Hugging Face Hub's view: commits, revisions (the gate), files of a manifest.
        self.hub = HubService(db, store, settings, manifests=self.manifests)
        # Hugging Face Hub uploads: LFS objects into blobs, commits into ModelPack manifests.
        self.hub_commits = HubCommitService(db, store, settings, uploads=self.uploads,
                                            manifests=self.manifests, hub=self.hub)
        # A result read against the others: reference ratio, regressions (at record time).
        self.regressions = RegressionService(db, store, settings)
        self.verification = VerificationService(db, store, settings, queue=self.queue,
                                                uploads=self.uploads, manifests=self.manifests,
                                                policies=self.policies, events=self.events,
                                                regressions=self.regressions,
                                                profiles=self.profiles)
        # Jobs and statuses kept in step with the hardware classes profiles name.
        self.class_upkeep = ClassUpkeep(db, store, settings, verification=self.verification)
        self.profiles.changed = self.class_upkeep.backfill
        # Results carried in a bundle from another assay, recorded on an admin's word.
        self.adoption = AdoptionService(db, store, settings, verification=self.verification,
                                        profiles=self.profiles, queue=self.queue)
        # Verification on request (webhooks in), of this registry's models or other ones'.
        self.remote = RemoteService(db, store, settings, queue=self.queue,
                                    verification=self.verification, policies=self.policies,
                                    events=self.events)
        # Identities, roles and the audit log (registry.api.guard guards every route).
        self.identities = IdentityService(db, store, settings)
        self.audit = AuditService(db, store, settings)
