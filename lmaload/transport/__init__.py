"""Drivers that move engine datagrams over real sockets: UDP/5436 (RFC 5844; unprivileged, many
MAG source addresses from 127.0.0.0/8 on loopback) and the raw IPv6 Mobility Header (protocol
135; root, many MAG addresses through an AnyIP local route in a network namespace).

``batch`` is the layer under both: sendmmsg/recvmmsg with a source address per datagram and the
source and destination of each datagram received, in the bulk codec's (buf, offsets) layout.
``udp5436`` and ``raw_mh`` carry an engine's datagrams over each transport; ``engine_loop`` runs
one engine over one of them.
"""
