"""Running the ``assay`` command in-process (click's ``CliRunner``) against a live test
server, as its user would, with the exit status checked."""

from __future__ import annotations

from click.testing import CliRunner

from registry.cli import main


def assay(*args: str, code: int = 0, input: str | None = None,
          stream: str = "output") -> str:
    """The output (stdout and stderr; ``stream="stdout"`` or ``"stderr"`` for one) of
    ``assay ARGS`` given ``input`` on stdin, which must exit with ``code``. ``assay``
    exits with what main() returns (the console script's ``sys.exit(main())``)."""
    result = CliRunner().invoke(main, list(args), input=input)
    assert (result.exit_code or result.return_value or 0) == code, \
        (args, result.output, result.exception)
    return getattr(result, stream)
