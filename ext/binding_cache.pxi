# The C view of lmaload/protocol/binding_cache.py's BCE_DTYPE (packed, little-endian fields):
# change both together. Include with: include "binding_cache.pxi"
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t


cdef packed struct bce_t:
    uint8_t state
    uint16_t flags
    uint16_t seq
    uint16_t lifetime
    double expires
    uint64_t ts
    uint8_t att
    uint8_t hi
    uint32_t tunnel
    uint8_t proxy_coa[16]
    uint8_t lla[16]
    uint8_t anchor[16]
