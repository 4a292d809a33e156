"""The namespace lab: a MAG host, LMA1 and LMA2 as network namespaces joined by veth links, so
the embedded pair speaks the raw Mobility Header (protocol 135) and a link can fail while both
LMAs live (seed §5, §5.2).

``topology`` is the plan (names, addresses, links, routes, the ``ip`` commands that build it),
``netns`` the namespace primitives, ``mag_host`` the MAG host's local prefix and raw socket (the
lab's, and those of a run towards LMAs of the user's own), ``manage`` brings a lab up and down,
``faults`` holds the nftables rules that cut or thin a link, ``pair`` runs the reference LMAs
inside it.
"""
