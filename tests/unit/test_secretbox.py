"""``registry.secretbox``: keys as operators write them, the generated key file, sealing."""

from __future__ import annotations

import base64
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from registry.secretbox import (
    PREFIX,
    SecretBox,
    SecretUnreadable,
    key_file,
    parse_keys,
)
from registry.settings import Settings


def test_keys_in_either_base64_alphabet_and_rotation_lists():
    raw = bytes(range(200, 232))  # encodes with "+" and "/" in the standard alphabet
    standard = base64.b64encode(raw).decode()  # what `openssl rand -base64 32` prints
    assert "+" in standard or "/" in standard
    urlsafe = base64.urlsafe_b64encode(raw).decode()
    assert parse_keys(standard) == parse_keys(urlsafe) == [urlsafe.encode()]
    other = Fernet.generate_key().decode()
    assert parse_keys(f" {other} , {standard} ") == [other.encode(), urlsafe.encode()]
    for bad in ("", ",", "secret", base64.b64encode(b"x" * 16).decode(), standard + "!"):
        with pytest.raises(ValueError, match="openssl rand -base64 32"):
            parse_keys(bad)


def test_seal_and_open_round_trip_and_plaintext_passes_through():
    box = SecretBox([Fernet.generate_key()], "test")
    for secret in ("s3cret", "ünïcødé ✓", "x" * 255):
        sealed = box.seal(secret)
        assert sealed.startswith(PREFIX) and secret not in sealed
        assert box.open(sealed) == secret
        assert box.seal(secret) != sealed  # a fresh IV every time
    assert box.open("stored before sealing existed") == "stored before sealing existed"
    assert box.reseal(box.seal("a")) is None
    assert box.open(box.reseal("legacy")) == "legacy"


def test_another_key_does_not_open_and_says_where_to_look():
    sealed = SecretBox([Fernet.generate_key()], "one").seal("s3cret")
    other = SecretBox([Fernet.generate_key()], "ASSAY_SECRETS_KEY")
    with pytest.raises(SecretUnreadable, match="does not open with ASSAY_SECRETS_KEY") as exc:
        other.open(sealed)
    assert "s3cret" not in str(exc.value)
    with pytest.raises(SecretUnreadable):
        other.reseal(sealed)
    with pytest.raises(SecretUnreadable):
        other.open(PREFIX + "garbage")


def test_rotation_opens_with_every_key_and_reseals_with_the_first():
    old, new = Fernet.generate_key(), Fernet.generate_key()
    sealed = SecretBox([old], "old").seal("s3cret")
    both = SecretBox([new, old], "both")
    assert both.open(sealed) == "s3cret"
    moved = both.reseal(sealed)
    assert SecretBox([new], "new").open(moved) == "s3cret" and both.reseal(moved) is None


def test_key_file_is_made_once_owner_only_and_shared(tmp_path):
    path = tmp_path / "data" / "secrets.key"
    key = key_file(path)
    assert path.stat().st_mode & 0o777 == 0o600
    assert key_file(path) == key and list(path.parent.iterdir()) == [path]
    settings = Settings(data_dir=tmp_path / "data")
    sealed = SecretBox.from_settings(settings).seal("s3cret")
    assert SecretBox.from_settings(settings).open(sealed) == "s3cret"
    assert "unset" in SecretBox.from_settings(settings).source


@pytest.mark.slow  # processes started together
def test_processes_starting_together_agree_on_one_key(tmp_path):
    path = tmp_path / "secrets.key"
    code = ("import sys; from pathlib import Path; from registry.secretbox import key_file; "
            "print(key_file(Path(sys.argv[1])).decode())")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(path)], stdout=subprocess.PIPE,
                              text=True, cwd=Path(__file__).parents[2]) for _ in range(8)]
    keys = {p.communicate(timeout=60)[0].strip() for p in procs}
    assert all(p.returncode == 0 for p in procs)
    assert keys == {path.read_text().strip()}
    assert sorted(os.listdir(tmp_path)) == ["secrets.key"]


def test_key_file_readable_by_others_is_warned_about(tmp_path, caplog):
    path = tmp_path / "secrets.key"
    path.write_text(Fernet.generate_key().decode() + "\n")
    path.chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="registry.secretbox"):
        key_file(path)
    assert "chmod 600" in caplog.text
    path.write_text("not a key\n")
    with pytest.raises(ValueError, match=str(path)):
        key_file(path)


def test_a_set_key_wins_over_the_key_file(tmp_path):
    key = Fernet.generate_key().decode()
    settings = Settings(data_dir=tmp_path, secrets_key=key,
                        secrets_key_file=tmp_path / "elsewhere.key")
    box = SecretBox.from_settings(settings)
    assert box.source == "ASSAY_SECRETS_KEY"
    assert SecretBox([key.encode()], "same").open(box.seal("s3cret")) == "s3cret"
    assert not (tmp_path / "elsewhere.key").exists() and not (tmp_path / "secrets.key").exists()
    custom = Settings(data_dir=tmp_path, secrets_key_file=tmp_path / "keys" / "k")
    SecretBox.from_settings(custom).seal("x")
    assert (tmp_path / "keys" / "k").exists() and not (tmp_path / "secrets.key").exists()
