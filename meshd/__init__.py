"""meshd: decentralised membership and peer discovery for WireGuard mesh networks."""

__version__ = "0.1.0"
