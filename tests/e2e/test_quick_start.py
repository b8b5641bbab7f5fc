"""The README's quick start ("A first push, verify and pull"), run command by command as
written, against a real ``assay serve`` with one verification worker.

Every ``sh`` block of that section is run in order, each line through a shell. The only
differences from a person at a terminal, each needed to run beside other tests:

- the registry address ``127.0.0.1:5000`` becomes this test's server;
- the working directory is a temporary one holding a link to the checkout's ``.venv``, so
  what the commands write (pulled models, OCI copies) stays out of the repository; and
  ``make models`` runs the checkout's Makefile with ``MODELS`` set to that directory's
  ``models`` (the default is ``./models`` of the checkout).
- the server verifies under the smoke profile (``tests/conftest.py`` sets it for tests not
  about verification), so the MLX wait takes seconds, not the default profile's minutes.

A command that fails fails the test with its output; the checks after that are on what the
commands printed and wrote, so a README that drifts from the CLI breaks here.
"""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

from tests.support.models import GEMMA_SHA256, sha256_file

REPO = Path(__file__).resolve().parents[2]
SECTION = "## A first push, verify and pull"
README_REGISTRY = "127.0.0.1:5000"


def quick_start_commands() -> list[str]:
    """The command lines of the section's ``sh`` blocks, comments removed."""
    text = (REPO / "README.md").read_text()
    section = text[text.index(SECTION):]
    section = section[:section.index("\n## ", len(SECTION))]
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", section, flags=re.S):
        for line in block.splitlines():
            words = shlex.split(line, comments=True)
            if words:
                commands.append(shlex.join(words))
    return commands


def test_readme_quick_start_commands_work(verify_server, tmp_path):
    server = verify_server
    (tmp_path / ".venv").symlink_to(REPO / ".venv")
    commands = quick_start_commands()
    assert commands[0] == "make models", commands
    assert any(c.startswith(".venv/bin/assay push models/gemma-3-270m-mlx ") for c in commands)
    outputs = {}
    for command in commands:
        command = command.replace(README_REGISTRY, server.host_port)
        if command == "make models":
            command = f"make -s -C {shlex.quote(str(REPO))} models MODELS={tmp_path / 'models'}"
        done = subprocess.run(command, shell=True, cwd=tmp_path, capture_output=True,
                              text=True, timeout=900)
        assert done.returncode == 0, f"{command}\nstdout: {done.stdout}\nstderr: {done.stderr}"
        outputs[command] = done.stdout

    pulled = tmp_path / "pulled" / "gemma3-270m.gguf"
    assert sha256_file(pulled) == GEMMA_SHA256
    listing = next(out for cmd, out in outputs.items() if " ls " in f"{cmd} ")
    assert "270m" in listing and "ready" in listing, listing
    bench = next(out for cmd, out in outputs.items() if " bench " in cmd)
    assert "llama.cpp" in bench and "mlx" in bench, bench
    oci_index = (tmp_path / "gemma3-oci" / "index.json").read_text()
    assert '"270m"' in oci_index, oci_index
