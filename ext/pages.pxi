# Memory written ahead of its use, for cache_index and arena: the first write of each page maps
# it, and on a virtual machine whose host takes back the guest's free memory that costs 5-10 µs.

cdef size_t PAGE = 4096


cdef inline void write_pages(char* p, size_t size) noexcept nogil:
    """Write the first octet of each page of the ``size`` octets at ``p`` (zeroed memory stays
    zero)."""
    cdef size_t at = 0
    while at < size:
        p[at] = 0
        at += PAGE
