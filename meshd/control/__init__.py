"""The control socket: how the CLI talks to a running daemon.

``protocol`` is the pure codec, ``client`` the blocking stdlib client the CLI uses (it must
stay cheap to import), ``server`` the trio server the daemon runs. The typed requests and
answers: ``wire`` (the frozen record they are built on), ``commands`` (each request and its
answer) and ``typed_json`` (to and from JSON; requests decoded from untrusted bytes).
"""
