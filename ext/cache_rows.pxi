# The binding cache rows' layout (BCE_DTYPE's size and field offsets) and little-endian field
# loads, RFC 6275 sequence-number order, and a new row entered in the cache's lists and indexes,
# for the compiled writers of the cache. Include in a module that cimports numpy as cnp,
# PyBytes_AS_STRING, memcpy and memset, imports BCE_DTYPE and defines _offset(dtype, name) (a
# field's offset), before its code reads a row:
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


cdef class Indexes:
    """The binding cache's lists and indexes, looked up once per call."""

    cdef list free, mn_ids, prefix_keys, ll_ids
    cdef dict by_mn, by_prefix, by_mag

    def __init__(self, cache):
        self.free = cache._free
        self.mn_ids = cache.mn_ids
        self.prefix_keys = cache.prefix_keys
        self.ll_ids = cache.ll_ids
        self.by_mn = cache._by_mn
        self.by_prefix = cache._by_prefix
        self.by_mag = cache._by_mag


cdef Py_ssize_t new_row(
    cache, Indexes ix, object mn, bytes key, object llid, bytes mag, object rows_of_mn
) except -1:
    """A zeroed row of the cache (grown if full) holding a new entry: MN ``mn`` (whose
    by-MN index entry is ``rows_of_mn``, None for none), the one prefix ``key``, MN LL-ID
    ``llid``, at the MAG of packed address ``mag``. The caller reads ``cache.rows`` again."""
    if not ix.free:
        cache._grow()
    # One int object for the row in every index (an object each would cost 32 octets per
    # index per entry).
    cdef object row_obj = ix.free.pop()
    cdef Py_ssize_t row = row_obj
    cdef uint8_t* r = <uint8_t*>cnp.PyArray_DATA(cache.rows) + row * ROW_SIZE
    memset(r, 0, ROW_SIZE)
    memcpy(r + R_PROXY_COA, PyBytes_AS_STRING(mag), 16)
    ix.mn_ids[row] = mn
    ix.prefix_keys[row] = (key,)
    ix.ll_ids[row] = llid
    if rows_of_mn is None:
        ix.by_mn[mn] = row_obj
    elif type(rows_of_mn) is int:
        ix.by_mn[mn] = {rows_of_mn, row_obj}
    else:
        rows_of_mn.add(row_obj)
    ix.by_prefix[key] = row_obj
    mag_rows = ix.by_mag.get(mag)
    if mag_rows is None:
        ix.by_mag[mag] = {row_obj}
    else:
        mag_rows.add(row_obj)
    return row
