"""The ``persona-core`` command line: build, inspect, move and serve PersonaPacks."""
