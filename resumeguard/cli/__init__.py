"""The command line: one module per subcommand, one error handler in ``main``.

May import: every other package (the top front door); nothing imports it.
"""
