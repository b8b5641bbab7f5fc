"""Rendering a model's own chat template, which is untrusted content of the model file
(runs in the verification child only).

``render`` renders a Jinja chat template (a GGUF's ``tokenizer.chat_template``) for one user
message as Hugging Face's ``apply_chat_template`` does, inside Jinja's
``ImmutableSandboxedEnvironment`` and within bounds on CPU time, memory, output size and the
size of integer powers. Any failure is ``Unsupported`` with the template's error: a broken
template is reported next to the prompt, never run outside the sandbox.
"""

from __future__ import annotations

import resource
import signal
import threading
from contextlib import contextmanager, suppress

from verifier.backends import Unsupported

# Bounds on rendering a chat template, which is untrusted content of the model file: CPU
# seconds, memory, characters rendered, and the bits of a power.
# A one-message prompt renders to hundreds of characters, a long system prompt to thousands.
_RENDER_SECONDS = 2.0
_RENDER_CHARS = 1 << 20
_RENDER_MEMORY = 256 << 20
_INT_BITS = 1 << 16




class _RenderLimit(Exception):
    """Rendering a chat template went beyond a bound; ``str(exc)`` says which."""


def render(source: str, message: str, bos_token: str, eos_token: str) -> str:
    """``source``, a chat template from a model file, rendered for one user ``message`` as
    Hugging Face's ``apply_chat_template`` renders it (Jinja's ``ImmutableSandboxedEnvironment``,
    ``trim_blocks``, ``lstrip_blocks``, ``loopcontrols``, ``raise_exception``; ``messages``,
    ``add_generation_prompt``, ``bos_token``, ``eos_token``); no ``strftime_now``, so templates
    use their fixed date and render the same every day. The template is untrusted: the sandbox
    keeps it from Python's internals, ``_bounded`` and ``_RENDER_CHARS`` bound the render's
    time, memory and size, and ``_sandbox`` the size of a power.
    Raises ``Unsupported`` with the template's error."""
    try:
        with _bounded(_RENDER_SECONDS, _RENDER_MEMORY):
            template = _sandbox().from_string(source)
            pieces: list[str] = []
            size = 0
            for piece in template.generate(
                    messages=[{"role": "user", "content": message}], add_generation_prompt=True,
                    bos_token=bos_token, eos_token=eos_token):
                size += len(piece)
                if size > _RENDER_CHARS:
                    raise _RenderLimit(f"renders more than {_RENDER_CHARS} characters")
                pieces.append(piece)
    except _RenderLimit as exc:
        raise Unsupported(f"the chat template {exc}") from None
    except MemoryError:
        raise Unsupported(f"the chat template needs more than {_RENDER_MEMORY >> 20} MiB") \
            from None
    except Exception as exc:  # anything a template can raise: it is the model's content
        why = " ".join(str(exc).split())[:300]
        raise Unsupported(f"the chat template failed: {type(exc).__name__}: {why}") from None
    return "".join(pieces)


def _sandbox():
    from jinja2 import ext
    from jinja2.exceptions import SecurityError, TemplateError
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class Sandbox(ImmutableSandboxedEnvironment):
        # A power of integers is one C call that the CPU deadline cannot interrupt (9 ** 9 ** 9
        # would run for minutes); a huge repetition is one allocation, refused by RLIMIT_AS.
        intercepted_binops = frozenset({"**"})

        def call_binop(self, context, operator, left, right):
            if isinstance(left, int) and isinstance(right, int) \
                    and left.bit_length() * right > _INT_BITS:
                raise SecurityError("the power is too large")
            return super().call_binop(context, operator, left, right)

    def raise_exception(message):
        raise TemplateError(message)

    env = Sandbox(trim_blocks=True, lstrip_blocks=True, extensions=[ext.loopcontrols])
    env.globals["raise_exception"] = raise_exception
    return env


@contextmanager
def _bounded(seconds: float, memory: int):
    """Raises ``_RenderLimit`` in the block after ``seconds`` of CPU time (``ITIMER_VIRTUAL``:
    the wall-clock timer stays free for others); allocating more than ``memory`` bytes fails
    (``RLIMIT_AS``, where ``/proc`` tells the base). Main thread only: it takes the signals."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(signum, frame):
        raise _RenderLimit(f"ran for more than {seconds:g} s of CPU time")

    previous = signal.signal(signal.SIGVTALRM, expire)
    limits = resource.getrlimit(resource.RLIMIT_AS)
    with suppress(OSError, ValueError):
        with open("/proc/self/statm") as statm:
            soft = int(statm.read().split()[0]) * resource.getpagesize() + memory
        if limits[0] != resource.RLIM_INFINITY:
            soft = min(soft, limits[0])
        resource.setrlimit(resource.RLIMIT_AS, (soft, limits[1]))
    signal.setitimer(signal.ITIMER_VIRTUAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_VIRTUAL, 0)
        resource.setrlimit(resource.RLIMIT_AS, limits)
        signal.signal(signal.SIGVTALRM, previous)
