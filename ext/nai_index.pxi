# The C view of lmaload.bulk_types.NaiIndex: stored NAIs to their mn_id, an open-addressing table
# of FNV-1a hashes, each hit confirmed by comparing the octets. Include after NO_MN_ID.
from libc.stdint cimport int64_t, uint8_t, uint32_t, uint64_t
from libc.string cimport memcmp

cdef uint64_t FNV_OFFSET = bulk_types.FNV_OFFSET
cdef uint64_t FNV_PRIME = bulk_types.FNV_PRIME


cdef struct nai_index_t:
    const uint8_t* blob
    const int64_t* offsets
    const uint32_t* ids
    const int64_t* slots
    uint64_t mask


cdef inline uint64_t nai_hash(const uint8_t* s, Py_ssize_t n) noexcept nogil:
    cdef uint64_t h = FNV_OFFSET
    cdef Py_ssize_t k
    for k in range(n):
        h = (h ^ s[k]) * FNV_PRIME
    return h


cdef inline uint32_t nai_lookup(const nai_index_t* x, const uint8_t* s, Py_ssize_t n) noexcept nogil:
    """The mn_id of the NAI s[0:n], NO_MN_ID for none."""
    cdef uint64_t i = nai_hash(s, n) & x.mask
    cdef int64_t k
    while True:
        k = x.slots[i]
        if k < 0:
            return NO_MN_ID
        if x.offsets[k + 1] - x.offsets[k] == n and memcmp(x.blob + x.offsets[k], s, n) == 0:
            return x.ids[k]
        i = (i + 1) & x.mask


cdef object open_nai_index(nai_index_t* x, index):
    """Point x into ``index`` (a NaiIndex); returns the arrays to keep alive."""
    arrays = (
        np.ascontiguousarray(index.blob, dtype=np.uint8),
        np.ascontiguousarray(index.offsets, dtype=np.int64),
        np.ascontiguousarray(index.ids, dtype=np.uint32),
        np.ascontiguousarray(index.slots, dtype=np.int64),
    )
    x.blob = <const uint8_t*>cnp.PyArray_DATA(<cnp.ndarray>arrays[0])
    x.offsets = <const int64_t*>cnp.PyArray_DATA(<cnp.ndarray>arrays[1])
    x.ids = <const uint32_t*>cnp.PyArray_DATA(<cnp.ndarray>arrays[2])
    x.slots = <const int64_t*>cnp.PyArray_DATA(<cnp.ndarray>arrays[3])
    x.mask = len(arrays[3]) - 1
    return arrays
