"""``registry.formats.hub_commit``: commit bodies as ``huggingface_hub`` itself writes
them, path checks, the files after a commit, and the ModelPack manifest it becomes."""

from __future__ import annotations

import base64
import hashlib
import json

import pytest
from huggingface_hub._commit_api import (
    CommitOperationAdd,
    CommitOperationDelete,
    _prepare_commit_payload,
)

from registry.errors import EntryUnknown, RequestInvalid
from registry.formats import hub_commit as hc
from registry.formats.classify import classify
from registry.manifests import parse_manifest


def client_body(operations, parent: str | None = None, copies=None) -> bytes:
    """The NDJSON body as ``_commit_api._send_commit`` serialises it."""
    payload = _prepare_commit_payload(operations, copies or {}, "add model", "why",
                                      parent_commit=parent)
    return b"".join(json.dumps(item).encode() + b"\n" for item in payload)


def add(path: str, data: bytes, mode: str) -> CommitOperationAdd:
    op = CommitOperationAdd(path_in_repo=path, path_or_fileobj=data)
    op._upload_mode = mode
    op._should_ignore = False
    return op


def test_parses_the_real_clients_body():
    weights, config = b"w" * 100, b'{"a": 1}'
    body = client_body([add("model.safetensors", weights, "lfs"),
                        add("config.json", config, "regular"),
                        CommitOperationDelete("old.bin"),
                        CommitOperationDelete("sub/", is_folder=True)], parent="a" * 40)
    commit = hc.parse_commit(body)
    assert commit.header == hc.Header("add model", "why", "a" * 40)
    assert commit.operations == [
        hc.LfsFile("model.safetensors", hashlib.sha256(weights).hexdigest(), 100),
        hc.InlineFile("config.json", config),
        hc.DeletedFile("old.bin"),
        hc.DeletedFolder("sub"),
    ]


def test_a_copy_is_an_lfs_line_without_size():
    line = {"key": "lfsFile", "value": {"path": "b.gguf", "algo": "sha256", "oid": "1" * 64}}
    body = b'{"key": "header", "value": {"summary": "s"}}\n' + json.dumps(line).encode()
    assert hc.parse_commit(body).operations == [hc.LfsFile("b.gguf", "1" * 64, None)]


@pytest.mark.parametrize("path", ["", "/etc/passwd", "../x", "a/../b", "a//b", "./a",
                                  ".git/config", "a/.GIT/x", "a\\b", "a\x00b", "x" * 1025])
def test_unsafe_paths_are_refused(path):
    with pytest.raises(RequestInvalid):
        hc.check_path(path)


@pytest.mark.parametrize("path", ["README.md", "a/b/c.json", ".gitattributes", "x..y",
                                  "sub/.hidden"])
def test_ordinary_paths_pass(path):
    assert hc.check_path(path) == path


@pytest.mark.parametrize("body, text", [
    (b"", "empty"),
    (b"[1]\n", "object"),
    (b'{"key": "header", "value": {}}\n{"key": "header", "value": {}}\n', "first, once"),
    (b'{"key": "deletedFile", "value": {"path": "a"}}\n', "header"),
    (b'{"key": "header", "value": {}}\n{"key": "copyFile", "value": {}}\n', "unknown"),
    (b'{"key": "header", "value": {"summary": 3}}\n', "summary"),
    (b'{"key": "header", "value": {}}\n{"key": "lfsFile", "value": {"path": "a", '
     b'"oid": "ABC", "size": 1}}\n', "hex"),
    (b'{"key": "header", "value": {}}\n{"key": "lfsFile", "value": {"path": "a", '
     b'"oid": "' + b"0" * 64 + b'", "size": true}}\n', "size"),
    (b'{"key": "header", "value": {}}\n{"key": "file", "value": {"path": "a", '
     b'"content": "aGk=", "encoding": "utf-8"}}\n', "encoding"),
])
def test_malformed_bodies_are_refused(body, text):
    with pytest.raises(RequestInvalid, match=text):
        hc.parse_commit(body)


def test_inline_files_have_a_cap():
    big = base64.b64encode(b"x" * (hc.MAX_INLINE_FILE + 1)).decode()
    line = {"key": "file", "value": {"path": "a", "content": big, "encoding": "base64"}}
    with pytest.raises(RequestInvalid, match="LFS"):
        hc.parse_commit(b'{"key": "header", "value": {}}\n' + json.dumps(line).encode())


def test_apply_adds_replaces_and_deletes_in_order():
    e = {n: hc.Entry(f"sha256:{n * 64}", i) for i, n in enumerate("abcd")}
    base = {"a.json": e["a"], "sub/x": e["b"], "sub/y": e["b"]}
    ops = [hc.DeletedFolder("sub"), hc.InlineFile("a.json", b""), hc.DeletedFile("a.json"),
           hc.LfsFile("m.gguf", "c" * 64, 2)]
    assert hc.apply(base, ops, {"a.json": e["d"], "m.gguf": e["c"]}) == {"m.gguf": e["c"]}
    with pytest.raises(EntryUnknown):
        hc.apply(base, [hc.DeletedFile("nope")], {})
    with pytest.raises(EntryUnknown):
        hc.apply(base, [hc.DeletedFolder("su")], {})  # a prefix is not a folder


def test_the_manifest_is_a_modelpack_model_with_paths():
    files = {"model.safetensors": hc.Entry("sha256:" + "1" * 64, 10),
             "config.json": hc.Entry("sha256:" + "2" * 64, 5),
             "README.md": hc.Entry("sha256:" + "3" * 64, 3)}
    config = hc.config_bytes(files, "gemma", "2025-01-01T00:00:00Z")
    assert json.loads(config) == {
        "descriptor": {"createdAt": "2025-01-01T00:00:00Z", "name": "gemma"},
        "modelfs": {"type": "layers", "diffIds": ["sha256:" + "3" * 64, "sha256:" + "2" * 64,
                                                  "sha256:" + "1" * 64]},
        "config": {"format": "safetensors"}}
    raw = hc.manifest_bytes(files, config, "sha256:" + "4" * 64,
                            hc.Header("s", "", None), "2025-01-01T00:00:00Z")
    found = classify(parse_manifest(raw, hc.OCI_MANIFEST))
    assert found.kind == "modelpack" and found.weight_format == "safetensors"
    assert found.config.path == "config.json"
    assert [f.path for f in found.files] == ["README.md", "config.json", "model.safetensors"]
    assert [json.loads(raw)["layers"][i]["mediaType"] for i in range(3)] == [
        hc.MODELPACK_DOC, hc.MODELPACK_WEIGHT_CONFIG, hc.MODELPACK_WEIGHT]


def test_media_types_by_name():
    assert hc.media_type("q/model-00001-of-00002.safetensors") == hc.MODELPACK_WEIGHT
    assert hc.media_type("m.gguf") == hc.MODELPACK_WEIGHT
    assert hc.media_type("LICENSE") == hc.MODELPACK_DOC
    assert hc.media_type("docs/usage.md") == hc.MODELPACK_DOC
    assert hc.media_type("tokenizer.json") == hc.MODELPACK_WEIGHT_CONFIG
    assert hc.weight_format(["a.safetensors", "b.gguf"]) == "gguf"
    assert hc.weight_format(["README.md"]) is None
