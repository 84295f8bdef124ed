"""``python -m persona_cli``: the ``persona-core`` command, for when its script is not on PATH."""

from persona_cli.main import main

main()
