"""The ``assay`` command line (entry point ``registry.cli:main``), one module per group:

- ``models``: push, pull, ls, inspect, status, bench, verify, rm (client; any OCI registry)
- ``bundles``: export, import (client; models across an air gap as one tar)
- ``account``: login, logout, key, token (client; the signed-in user on assay)
- ``webhooks``: webhook (client; an assay registry's outgoing webhooks)
- ``profiles``: profile (client; a namespace's verification profile)
- ``mirrors``: mirror (client; an assay registry's pull-through mirror namespaces)
- ``server``: serve; ``database``: migrate; ``worker``: worker
- ``maintenance``: gc, scrub, retention (on the server's database and store)
- ``users``: user; ``robots``: robot; ``namespaces``: namespace; ``audit``: audit (the same)

The grammar every group follows: verbs ``add|ls|rm|show`` (earlier verbs stay as hidden
aliases), listings as tables with a header or ``--json``, a secret shown once alone on
stdout with its warning on stderr, and the registry given one way
(``registry.cli.options``). Server-side commands say on stderr which database they use.

``main`` imports a command's module only when that command runs (``group.LazyGroup``):
client commands never import the server, and ``assay --help`` imports no command module.
"""

from __future__ import annotations

from registry.cli.group import Lazy, LazyGroup

COMMANDS = {
    "push": Lazy("registry.cli.models:push",
                 "Push PATH (a .gguf file, an Ollama Modelfile, or a safetensors/MLX model "
                 "directory) to REF."),
    "pull": Lazy("registry.cli.models:pull",
                 "Pull REF and write the model as files (.gguf plus Modelfile, or a model "
                 "directory)."),
    "ls": Lazy("registry.cli.models:ls_command",
               "List the repositories of a registry, or the tags of REPO with their "
               "verification status and figures."),
    "inspect": Lazy("registry.cli.models:inspect",
                    "Show a manifest, its model card, logical vs. stored size, status and "
                    "verification."),
    "status": Lazy("registry.cli.models:status",
                   "Show a model's verification status and figures."),
    "bench": Lazy("registry.cli.models:bench",
                  "Compare models side by side: for each configuration of the run matrix, "
                  "each model's tokens/s, time to first token and peak memory, then "
                  "perplexity and prompts."),
    "verify": Lazy("registry.cli.models:verify",
                   "Run verification of a model again (on assay registries)."),
    "rm": Lazy("registry.cli.models:rm",
               "Delete a tag (REF with :TAG), a manifest (REF with @DIGEST), or with --all "
               "a whole repository."),
    "export": Lazy("registry.cli.bundles:export_command",
                   "Write models, with every blob and referrer (verification results, "
                   "signatures), into one tar for an air-gapped site: an OCI image layout "
                   "that assay import, skopeo (oci-archive:FILE.tar:TAG) and oras read."),
    "import": Lazy("registry.cli.bundles:import_command",
                   "Push everything a bundle from assay export holds into REGISTRY (any OCI "
                   "registry), every digest kept."),
    "login": Lazy("registry.cli.account:login",
                  "Check credentials against REGISTRY (HOST[:PORT], default $ASSAY_REGISTRY, "
                  "else 127.0.0.1:5000) and store them for later commands "
                  "(~/.config/assay/auth.json, mode 0600; $ASSAY_CONFIG_DIR moves it)."),
    "logout": Lazy("registry.cli.account:logout",
                   "Forget the credentials stored for REGISTRY."),
    "key": Lazy("registry.cli.account:key",
                "Your Ollama public keys on an assay registry (with one registered, "
                "`ollama push` and `ollama pull` sign in as you)."),
    "token": Lazy("registry.cli.account:token",
                  "Your personal access tokens on an assay registry (for CI, scripts, "
                  "ASSAY_TOKEN)."),
    "webhook": Lazy("registry.cli.webhooks:webhook",
                    "Outgoing webhooks of an assay registry: signed events (push, tag, "
                    "delete, verification.*) POSTed to a URL."),
    "profile": Lazy("registry.cli.profiles:profile",
                    "Verification profiles: what a namespace's models are measured under "
                    "(run matrix, quality, limits, regression thresholds)."),
    "mirror": Lazy("registry.cli.mirrors:mirror",
                   "Mirror namespaces: pulls of what a namespace lacks are fetched from an "
                   "upstream registry (Ollama's, any OCI registry, or a Hugging Face "
                   "endpoint), stored and verified."),
    "serve": Lazy("registry.cli.server:serve",
                  "Serve the registry (OCI Distribution API under /v2/, REST under /api/v1/) "
                  "and, unless --workers 0, verify pushed models in background worker "
                  "processes."),
    "migrate": Lazy("registry.cli.database:migrate",
                    "Create or upgrade the database schema (serve does this at start too)."),
    "worker": Lazy("registry.cli.worker:worker",
                   "Run verification workers against the configured database and blob store "
                   "until SIGTERM/Ctrl-C (a job in progress is handed back to the queue)."),
    "class": Lazy("registry.cli.classes:hardware_class",
                  "Hardware classes: named selectors over what verification workers are and "
                  "can run (GET /api/v1/workers lists each worker's classes)."),
    "workers": Lazy("registry.cli.workers:workers",
                    "List the verification workers a registry knows of: state, machine, "
                    "backends, accelerator, labels, what each is running and when it was "
                    "last seen."),
    "gc": Lazy("registry.cli.maintenance:gc",
               "Delete blobs no manifest refers to, and abandoned uploads; safe while "
               "serving."),
    "scrub": Lazy("registry.cli.maintenance:scrub",
                  "Re-hash stored blobs and report corrupt or missing ones; safe while "
                  "serving."),
    "retention": Lazy("registry.cli.maintenance:retention",
                      "Apply every namespace's retention policy (assay namespace retention)."),
    "user": Lazy("registry.cli.users:user",
                 "People who sign in with a password (and their tokens and keys)."),
    "robot": Lazy("registry.cli.robots:robot",
                  "Robot accounts: no password, only tokens (for CI and deployments)."),
    "namespace": Lazy("registry.cli.namespaces:namespace",
                      "Roles in a namespace (read, write, admin), its anonymous-pull switch, "
                      "storage quota and retention policy."),
    "audit": Lazy("registry.cli.audit:audit",
                  "The audit log, newest first: pushes, deletes, permission changes, "
                  "overrides."),
}

main = LazyGroup(
    name="main", lazy=COMMANDS,
    help="assay: an OCI registry for models that runs every model before it is served.")

__all__ = ["COMMANDS", "main"]
