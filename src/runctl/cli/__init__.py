"""The ``runctl`` command line: thin typer commands over the library (parse, call, render)."""
