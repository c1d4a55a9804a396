"""The config file of ``meshd up`` and ``meshd join``, and where each option's value comes from.

The file is TOML (read with the standard library's tomllib): one flat table whose keys are the
options of ``up`` and ``join`` spelled with underscores (``state_dir``, ``wg_backend``; the
option's name with dashes is accepted too). A value comes from, first to last:

1. the command line (``--wg-backend none``);
2. the environment: ``MESHD_`` and the key in capitals (``MESHD_WG_BACKEND=none``), set on
   both commands by click's ``auto_envvar_prefix`` (``keys.CONTEXT``);
3. the config file: ``--config PATH`` (or ``MESHD_CONFIG``), else ``settling.DEFAULT_PATH``
   if it exists;
4. the option's default.

The keys are not listed by hand: ``keys.keys()`` reads them from the signatures of the ``up``
and ``join`` functions (their typer options), so an option added there is a key at once, and
``meshd config keys --markdown`` prints the table that docs/config.md holds (a test keeps
them equal). What a value must be is checked twice over: its TOML type against the option's
Python type, then its meaning (``validators.MEANING``: a multiaddr, a backend, a duration,
...) with the same parsers the command uses. Every problem carries the line it is on, and no
content of a file makes this package raise anything but ``settling.ConfigError``
(tests/cli/test_configfile.py has the property).

The modules, in the order a value goes through them:

- ``keys``: :class:`~meshd.cli.configfile.keys.Key` and the keys read from the commands;
- ``checking``: a file's text checked (values by key, problems by line); it never raises;
- ``validators``: what each key's value means, one check per key;
- ``settling``: the file chosen, read and loaded, and a command's values settled against it;
- ``presenting``: the table of keys, and what ``meshd config show`` prints.

This file imports nothing: the quick path of ``up`` and ``join`` (meshd.cli.quick_up) imports
``keys``, ``checking``, ``validators`` and ``settling``, none of which imports typer at the
top.
"""
