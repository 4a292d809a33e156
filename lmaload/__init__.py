"""lmaload: load generator and failover tester for Proxy Mobile IPv6 LMA pairs."""

__version__ = "0.1.0"
