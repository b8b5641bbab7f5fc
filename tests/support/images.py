"""The project's image, built from ``Dockerfile`` with buildah for the deployment tests.

**Its base is a stand-in for ``python:3.11-slim``**: there is no Docker Hub here, so the
tests build one locally and pass it as the Dockerfile's ``BASE`` argument. The stand-in is
what the official image is made of: Debian bookworm (``debootstrap --variant=minbase``) with
Python 3.11, apt and CA certificates. Debian's Python sits in a virtual environment at
``/opt/venv``, first on ``PATH``, so ``python`` and ``pip`` behave as in the official image
(pip installs into the image's Python, with no "externally managed" refusal). It trusts the
CAs this machine trusts, as a base image made on a network behind an HTTPS proxy must, for
pip to reach PyPI from the build.

llama-cpp-python is not compiled in the test's build: the wheel pip already built for this
machine's virtual environment is handed to the build (``pip wheel --no-deps`` from pip's
cache into a wheelhouse, mounted with ``buildah bud -v DIR:/wheelhouse:ro`` and named by the
``PIP_FIND_LINKS`` build argument). Everything else comes from PyPI, as for any user.

Both images stay in buildah's storage in the per-machine test cache, tagged with a hash of
their inputs (the stand-in: its recipe and the trusted CAs; the image: ``Dockerfile``,
``.dockerignore``, every file its ``COPY`` lines take, the base and the wheel), so a rerun
on the same machine with the same sources builds nothing. Older builds are removed.
"""

from __future__ import annotations

import hashlib
import re
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

from tests.support.buildah import Buildah, BuildahError, require_tools
from tests.support.models import cache_dir, locked, sha256_file
from tests.support.processes import REPO_ROOT

STANDIN_REPOSITORY = "localhost/python-3.11-slim-standin"
IMAGE_REPOSITORY = "localhost/assay-compose-test"
# What the stand-in is made of; change it and every machine builds a new one.
STANDIN_RECIPE = ("debootstrap --variant=minbase --include=python3,python3-venv,"
                  "ca-certificates bookworm; python3 -m venv /opt/venv; PATH=/opt/venv/bin:...; "
                  "host CAs; /etc/pip.conf cert")
STANDIN_PATH = "/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
HOST_CAS = Path("/usr/local/share/ca-certificates")
IGNORED = re.compile(r"(^|/)(__pycache__(/|$)|[^/]*\.pyc$)")  # as .dockerignore says


@dataclass(frozen=True)
class BuiltImage:
    name: str
    build_seconds: float | None  # None: taken from the cache


def debian_mirror() -> str:
    """The Debian mirror apt on this machine uses for bookworm (else deb.debian.org)."""
    sources = sorted(Path("/etc/apt/sources.list.d").glob("*.sources"))
    for path in sources:
        for stanza in path.read_text().split("\n\n"):
            fields = dict(line.split(":", 1) for line in stanza.splitlines()
                          if ":" in line and not line.startswith("#"))
            if "bookworm" in fields.get("Suites", "").split() and "URIs" in fields:
                return fields["URIs"].split()[0]
    legacy = Path("/etc/apt/sources.list")
    for line in legacy.read_text().splitlines() if legacy.exists() else []:
        words = line.split()
        if len(words) >= 3 and words[0] == "deb" and words[2] == "bookworm":
            return next(w for w in words[1:] if not w.startswith("["))
    return "http://deb.debian.org/debian"


def _digest(parts: list[bytes]) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(hashlib.sha256(part).digest())
    return h.hexdigest()[:16]


def _host_cas() -> list[Path]:
    return sorted(HOST_CAS.rglob("*.crt")) if HOST_CAS.is_dir() else []


def _standin_name() -> str:
    key = _digest([STANDIN_RECIPE.encode()]
                  + [p.name.encode() + p.read_bytes() for p in _host_cas()])
    return f"{STANDIN_REPOSITORY}:{key}"


def _build_standin(buildah: Buildah, name: str, log: Path) -> None:
    require_tools("debootstrap")
    work = "assay-standin-build"
    container = buildah.container("scratch", work)
    try:
        root = Path(buildah("mount", work).strip())
        with open(log, "ab") as out:
            proc = subprocess.run(
                ["debootstrap", "--variant=minbase",
                 "--include=python3,python3-venv,ca-certificates", "bookworm", str(root),
                 debian_mirror()], stdout=out, stderr=subprocess.STDOUT, timeout=900)
        if proc.returncode != 0:
            raise BuildahError(f"debootstrap failed:\n{log.read_text()[-3000:]}")
        for ca in _host_cas():
            (root / "usr/local/share/ca-certificates" / ca.name).write_bytes(ca.read_bytes())
        (root / "etc/pip.conf").write_text("[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n")
        for step in (["update-ca-certificates"], ["python3", "-m", "venv", "/opt/venv"]):
            done = container.run(step, {})
            if done.returncode != 0:
                raise BuildahError(f"{step} in the stand-in failed:\n{done.stdout}{done.stderr}")
        # Like the official image: no package lists or downloaded packages left behind.
        for leftover in [*root.glob("var/cache/apt/archives/*.deb"),
                         *root.glob("var/lib/apt/lists/*_*")]:
            leftover.unlink()
        buildah("config", f"--env=PATH={STANDIN_PATH}", "--env=LANG=C.UTF-8",
                "--cmd=python3", "--label=org.opencontainers.image.description="
                "stand-in for python:3.11-slim (Debian bookworm, Debian's Python 3.11)", work)
        buildah("commit", "--rm", work, name, timeout=600)
    except BaseException:
        subprocess.run(buildah.command("rm", work), capture_output=True, timeout=120)
        raise


def llama_wheelhouse() -> Path:
    """A directory holding the llama-cpp-python wheel of this machine's environment, taken
    from pip's cache (``pip wheel`` compiles it only if pip never built it here)."""
    pinned = version("llama-cpp-python")
    house = cache_dir() / f"wheelhouse-llama-cpp-python-{pinned}"
    if not list(house.glob("llama_cpp_python-*.whl")):
        tmp = house.with_name(house.name + ".partial")
        subprocess.run(["rm", "-rf", str(tmp)], check=True)
        proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps",
                               f"llama-cpp-python=={pinned}", "-w", str(tmp)],
                              capture_output=True, text=True, timeout=1800)
        if proc.returncode != 0:
            raise BuildahError(f"pip wheel llama-cpp-python failed:\n{proc.stderr[-3000:]}")
        tmp.rename(house)
    return house


def _copied_files(dockerfile: Path) -> list[Path]:
    """The files the build context gives ``COPY`` (sources of COPY without ``--from``)."""
    files: list[Path] = []
    for line in dockerfile.read_text().splitlines():
        if line.split(None, 1)[:1] != ["COPY"]:
            continue
        words = shlex.split(line, comments=True)
        if any(w.startswith("--from") for w in words):
            continue
        for source in (w for w in words[1:-1] if not w.startswith("--")):
            path = REPO_ROOT / source
            found = sorted(path.rglob("*")) if path.is_dir() else [path]
            files += [p for p in found if p.is_file()
                      and not IGNORED.search(p.relative_to(REPO_ROOT).as_posix())]
    return files


def _image_name(base: str, wheel: Path) -> str:
    dockerfile = REPO_ROOT / "Dockerfile"
    parts = [base.encode(), sha256_file(wheel).encode()]
    for path in [dockerfile, REPO_ROOT / ".dockerignore", *_copied_files(dockerfile)]:
        parts.append(path.relative_to(REPO_ROOT).as_posix().encode() + b"\0" + path.read_bytes())
    return f"{IMAGE_REPOSITORY}:{_digest(parts)}"


def _prune(buildah: Buildah, repository: str, keep: str) -> None:
    for old in buildah.image_names(repository):
        if old != keep:
            buildah("rmi", old, timeout=300)


def assay_image(buildah: Buildah, log_dir: Path) -> BuiltImage:
    """The project's image on the stand-in base, built unless this machine has it already;
    build output goes to ``log_dir``."""
    with locked(buildah.root / "build.lock"):  # one builder per machine
        base = _standin_name()
        if not buildah.image_exists(base):
            _build_standin(buildah, base, log_dir / "standin.log")
            _prune(buildah, STANDIN_REPOSITORY, base)
        house = llama_wheelhouse()
        wheel = next(house.glob("llama_cpp_python-*.whl"))
        name = _image_name(base, wheel)
        if buildah.image_exists(name):
            return BuiltImage(name, None)
        started = time.monotonic()
        log = log_dir / "build.log"
        with open(log, "ab") as out:
            proc = subprocess.run(buildah.command(
                "bud", "--isolation", "chroot", "--pull=never", "--layers=false",
                f"--build-arg=BASE={base}", "--build-arg=PIP_FIND_LINKS=/wheelhouse",
                f"--volume={house}:/wheelhouse:ro", "--tag", name, str(REPO_ROOT)),
                stdout=out, stderr=subprocess.STDOUT, cwd=REPO_ROOT, timeout=1800)
        if proc.returncode != 0:
            raise BuildahError(f"buildah bud failed:\n{log.read_text()[-5000:]}")
        _prune(buildah, IMAGE_REPOSITORY, name)
        return BuiltImage(name, time.monotonic() - started)
