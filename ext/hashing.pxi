# Keys mixed into 64 bits for the compiled open-addressing tables (addresses, prefix keys, MN
# identifiers), and the little-endian 64-bit load they are built on:
#     include "hashing.pxi"
from libc.stdint cimport uint8_t, uint64_t
from libc.string cimport memcpy

cdef inline uint64_t load64(const uint8_t* p) noexcept nogil:
    cdef uint64_t v
    memcpy(&v, p, 8)
    return v


cdef inline uint64_t mix64(uint64_t h) noexcept nogil:
    h ^= h >> 33
    h *= <uint64_t>0xFF51AFD7ED558CCDULL
    return h ^ (h >> 33)


cdef inline uint64_t address_hash(const uint8_t* key) noexcept nogil:
    """A 16-octet address mixed into 64 bits."""
    return mix64(load64(key) * <uint64_t>0x9E3779B97F4A7C15ULL ^ load64(key + 8))


cdef inline uint64_t octets_hash(const uint8_t* p, Py_ssize_t n) noexcept nogil:
    """``n`` octets mixed into 64 bits."""
    cdef uint64_t h = <uint64_t>n * <uint64_t>0x9E3779B97F4A7C15ULL
    cdef uint64_t tail = 0
    cdef Py_ssize_t k = 0
    while k + 8 <= n:
        h = mix64(h ^ load64(p + k)) * <uint64_t>0x9E3779B97F4A7C15ULL
        k += 8
    if k < n:
        memcpy(&tail, p + k, n - k)
        h = mix64(h ^ tail) * <uint64_t>0x9E3779B97F4A7C15ULL
    return mix64(h)
