"""Worker capabilities as the registry reads them: an operator's labels, the override of
what a worker detected (``verifier.capabilities.detect``), and, for hardware classes,
matching them.

Labels (``ASSAY_WORKER_LABELS``): ``site=lab2,tier=big``. The override
(``ASSAY_WORKER_CAPABILITIES``): a JSON object merged over the detection, key by key;
tests use it to play workers of other machines on this one.
"""

from __future__ import annotations

import json
import re

LABEL_KEY = re.compile(r"[a-z0-9][a-z0-9_.-]{0,62}")
LABEL_VALUE = re.compile(r"[A-Za-z0-9_.:/@+-]{0,128}")


def parse_labels(text: str | None) -> dict[str, str]:
    """``"site=lab2,tier=big"`` as ``{"site": "lab2", "tier": "big"}``; ValueError names
    the first entry that is not ``key=value`` (keys: lower case, digits, ``._-``)."""
    labels: dict[str, str] = {}
    for entry in (text or "").split(","):
        entry = entry.strip()
        if not entry:
            continue
        key, sep, value = entry.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not LABEL_KEY.fullmatch(key) or not LABEL_VALUE.fullmatch(value):
            raise ValueError(f"worker label {entry[:80]!r} is not key=value (a key of lower "
                             "case letters, digits and ._-, a value of letters, digits and "
                             "._:/@+-)")
        labels[key] = value
    return labels


def parse_override(text: str | None) -> dict:
    """The override as a JSON object ({} for none); ValueError if it is not one."""
    if not text or not text.strip():
        return {}
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"the capability override is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ValueError("the capability override must be a JSON object")
    return value


def apply_override(detected: dict, override: dict) -> dict:
    """``detected`` with ``override``'s keys in its place; ``backends`` is merged per
    backend (``{"backends": {"mlx": null}}`` removes one)."""
    merged = dict(detected)
    for key, value in override.items():
        if key == "backends" and isinstance(value, dict):
            backends = dict(merged.get("backends") or {})
            for name, spec in value.items():
                if spec is None:
                    backends.pop(name, None)
                else:
                    backends[name] = spec
            merged["backends"] = backends
        else:
            merged[key] = value
    return merged


# ---- hardware classes: selectors over capabilities and labels ---------------------------

ACCELERATORS = ("none", "any", "cuda", "metal", "rocm", "vulkan")
BACKENDS = ("llama.cpp", "mlx")
SELECTOR_KEYS = {
    "accelerator": "none | any (an accelerator of any kind) | cuda | metal | rocm | vulkan",
    "min_accelerator_memory": "a size (16GiB, 24000000000)",
    "backend": "llama.cpp | mlx, or a list of both: the worker has every one",
    "llama_cpp_build": "cpu | cuda | metal | vulkan | rocm | sycl",
    "mlx_device": "cpu | gpu",
    "os": "linux | darwin | windows",
    "arch": "x86_64 | arm64 | aarch64 ...",
    "min_memory": "a size: the machine's RAM",
    "min_cores": "a number of logical cores",
    "labels": "an object of label: value the worker must carry",
}
_SIZE = None


def _size(value, key: str) -> int:
    global _SIZE
    if _SIZE is None:
        from pydantic import ByteSize, TypeAdapter
        _SIZE = TypeAdapter(ByteSize)
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"{key} must be a size such as 16GiB")
    try:
        return int(_SIZE.validate_python(value))
    except Exception:  # noqa: BLE001 - pydantic's message names its grammar, ours is enough
        raise ValueError(f"{key} must be a size such as 16GiB, not {str(value)[:40]!r}") \
            from None


def _word(value, key: str, allowed: tuple[str, ...] | None = None) -> str:
    if not isinstance(value, str) or not value or len(value) > 64:
        raise ValueError(f"{key} must be a word")
    if allowed is not None and value not in allowed:
        raise ValueError(f"{key} must be one of {', '.join(allowed)}, not {value[:40]!r}")
    return value


def check_selector(selector: object) -> dict:
    """A hardware class's selector, checked and normalised (sizes in bytes, ``backend`` a
    sorted list). ValueError names the first key or value that is wrong. ``{}`` selects
    every worker."""
    if not isinstance(selector, dict):
        raise ValueError("a selector is an object such as {\"accelerator\": \"cuda\"}")
    out: dict = {}
    for key, value in selector.items():
        if key not in SELECTOR_KEYS:
            raise ValueError(f"unknown selector key {str(key)[:40]!r}; known: "
                             f"{', '.join(SELECTOR_KEYS)}")
        if key == "accelerator":
            out[key] = _word(value, key, ACCELERATORS)
        elif key in ("min_accelerator_memory", "min_memory"):
            out[key] = _size(value, key)
        elif key == "backend":
            names = [value] if isinstance(value, str) else value
            if not isinstance(names, list) or not names:
                raise ValueError("backend must be llama.cpp, mlx or a list of them")
            out[key] = sorted({_word(n, key, BACKENDS) for n in names})
        elif key == "min_cores":
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError("min_cores must be a whole number of at least 1")
            out[key] = value
        elif key == "labels":
            if not isinstance(value, dict) or not all(
                    isinstance(k, str) and LABEL_KEY.fullmatch(k) and isinstance(v, str)
                    and LABEL_VALUE.fullmatch(v) for k, v in value.items()):
                raise ValueError("labels must be an object of label: value, as in "
                                 "ASSAY_WORKER_LABELS")
            out[key] = dict(value)
        else:
            out[key] = _word(value, key)
    return out


def matches(selector: dict, capabilities: dict, labels: dict) -> bool:
    """Whether a worker with ``capabilities`` and ``labels`` is of the class ``selector``
    (checked by ``check_selector``) selects: every key holds."""
    acc = capabilities.get("accelerator") if isinstance(capabilities.get("accelerator"),
                                                          dict) else {}
    kind = acc.get("kind") or "none"
    backends = capabilities.get("backends") if isinstance(capabilities.get("backends"),
                                                           dict) else {}
    for key, want in selector.items():
        if key == "accelerator":
            ok = kind != "none" if want == "any" else kind == want
        elif key == "min_accelerator_memory":
            ok = kind != "none" and (acc.get("memory_bytes") or 0) >= want
        elif key == "backend":
            ok = all(name in backends for name in want)
        elif key == "llama_cpp_build":
            ok = (backends.get("llama.cpp") or {}).get("build") == want
        elif key == "mlx_device":
            ok = (backends.get("mlx") or {}).get("device") == want
        elif key in ("os", "arch"):
            ok = str(capabilities.get(key) or "").lower() == want.lower()
        elif key == "min_memory":
            ok = (capabilities.get("memory_bytes") or 0) >= want
        elif key == "min_cores":
            ok = (capabilities.get("cores") or 0) >= want
        else:  # labels
            ok = all(labels.get(k) == v for k, v in want.items())
        if not ok:
            return False
    return True
