# The C view of lmaload/population.py's MN_DTYPE and MAG_DTYPE (packed, little-endian fields):
# change both together. Include with: include "population.pxi"
from libc.stdint cimport int64_t, uint8_t, uint16_t, uint32_t, uint64_t


cdef packed struct mn_t:
    uint32_t mn_id
    uint32_t mag
    uint8_t hnp[16]
    uint8_t hnp_len
    uint8_t att
    uint8_t hi
    uint8_t ll_len
    uint8_t ll_id[8]
    uint8_t lma
    uint8_t state
    uint8_t retries
    uint16_t seq
    uint16_t lifetime
    uint64_t ts
    uint8_t ipv4_hoa[4]
    int64_t t_send
    int64_t t_due
    int64_t t_acked


cdef packed struct mag_t:
    uint8_t addr6[16]
    uint8_t addr4[4]
