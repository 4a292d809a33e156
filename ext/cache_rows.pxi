# The binding cache rows' layout (BCE_DTYPE's size and field offsets) and little-endian field
# loads, RFC 6275 sequence-number order, a row's state set and counted, whether a row is an MN's
# one-prefix entry, and a new row entered in the cache's lists and indexes, for the compiled
# writers of the cache. Include in a module that cimports numpy as cnp, PyBytes_AS_STRING,
# memcmp, memcpy, memset and lmaload._ext.cache_index's CacheIndex, imports BCE_DTYPE and defines
# _offset(dtype, name) (a field's offset), before its code reads a row:
#     include "cache_rows.pxi"
from libc.stdint cimport uint8_t, uint16_t, uint64_t

cdef Py_ssize_t ROW_SIZE = BCE_DTYPE.itemsize
cdef Py_ssize_t R_STATE = _offset(BCE_DTYPE, "state")
cdef Py_ssize_t R_FLAGS = _offset(BCE_DTYPE, "flags")
cdef Py_ssize_t R_SEQ = _offset(BCE_DTYPE, "seq")
cdef Py_ssize_t R_LIFETIME = _offset(BCE_DTYPE, "lifetime")
cdef Py_ssize_t R_EXPIRES = _offset(BCE_DTYPE, "expires")
cdef Py_ssize_t R_TS = _offset(BCE_DTYPE, "ts")
cdef Py_ssize_t R_ATT = _offset(BCE_DTYPE, "att")
cdef Py_ssize_t R_HI = _offset(BCE_DTYPE, "hi")
cdef Py_ssize_t R_TUNNEL = _offset(BCE_DTYPE, "tunnel")
cdef Py_ssize_t R_PROXY_COA = _offset(BCE_DTYPE, "proxy_coa")
cdef Py_ssize_t R_LLA = _offset(BCE_DTYPE, "lla")
cdef Py_ssize_t R_ANCHOR = _offset(BCE_DTYPE, "anchor")


cdef inline uint16_t get16(const uint8_t* p) noexcept nogil:
    cdef uint16_t v
    memcpy(&v, p, 2)
    return v


cdef inline uint64_t get64(const uint8_t* p) noexcept nogil:
    cdef uint64_t v
    memcpy(&v, p, 8)
    return v


cdef inline bint serial_newer(uint16_t a, uint16_t b) noexcept nogil:
    """RFC 6275 §9.5.1, as lmaload.protocol.pmip.serial_newer."""
    cdef uint16_t d = <uint16_t>(a - b)
    return 0 < d < 0x8000


cdef inline void set_state(CacheIndex index, uint8_t* r, uint8_t state) noexcept:
    """Put the row at ``r`` in ``state``, counted in ``index``."""
    index.in_state[r[R_STATE]] -= 1
    index.in_state[state] += 1
    r[R_STATE] = state


cdef class Indexes:
    """The binding cache's lists and index, looked up once per call."""

    cdef list mn_ids, prefix_keys, ll_ids
    cdef CacheIndex index

    def __init__(self, cache):
        self.mn_ids = cache.mn_ids
        self.prefix_keys = cache.prefix_keys
        self.ll_ids = cache.ll_ids
        self.index = cache.index


cdef inline bint holds(Indexes ix, Py_ssize_t row, object mn, const uint8_t* key) except -1:
    """Whether ``row`` is MN ``mn``'s entry with the one prefix key ``key`` (17 octets)."""
    cdef tuple keys = ix.prefix_keys[row]
    return (
        ix.mn_ids[row] == mn
        and len(keys) == 1
        and memcmp(PyBytes_AS_STRING(keys[0]), key, 17) == 0
    )


cdef Py_ssize_t new_row(
    cache, Indexes ix, bytes mn, bytes key, object llid, bytes mag
) except -1:
    """A zeroed row of the cache (grown if full) holding a new entry: MN ``mn``, the one prefix
    ``key``, MN LL-ID ``llid``, at the MAG of packed address ``mag``. The caller reads
    ``cache.rows`` again."""
    cdef Py_ssize_t row = ix.index.take_row()
    if row < 0:
        cache._grow()
        row = ix.index.take_row()
    cdef uint8_t* r = <uint8_t*>cnp.PyArray_DATA(cache.rows) + row * ROW_SIZE
    memset(r, 0, ROW_SIZE)
    memcpy(r + R_PROXY_COA, PyBytes_AS_STRING(mag), 16)
    ix.mn_ids[row] = mn
    ix.prefix_keys[row] = (key,)
    ix.ll_ids[row] = llid
    ix.index.add(
        row, mn, <const uint8_t*>PyBytes_AS_STRING(key), <const uint8_t*>PyBytes_AS_STRING(mag)
    )
    return row
