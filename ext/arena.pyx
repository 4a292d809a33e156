"""Memory for Python's small objects, written before it is needed.

Python takes the memory of its small objects (pymalloc) in arenas of a fixed size (1 MiB on
64-bit builds since 3.10), each mapped from the kernel when it is needed and given back when it is
empty. The first write of each page of a new arena maps it. On a virtual machine whose host takes
back the guest's free memory (virtio-balloon free page reporting) that write costs 5-10 µs per
4 KiB page, against 0.6 µs for a page freed a moment before. An LMA building a binding cache
takes about 230 octets of arenas per session (its MN identifier, its prefix keys and their
tuple, and what is in flight); at 100 000 sessions a second that is 5 000 new pages a second, up
to a tenth of the LMA's CPU, landing as stalls of milliseconds where many pages come at once.

``reserve(octets)`` maps a pool of that many octets, writes every page of it at once, and puts in
an arena allocator (``PyObject_SetArenaAllocator``) that hands out arenas from the pool and takes
them back into it (written, never given back to the kernel). Arenas the pool cannot serve, and
those mapped before the pool, go to and come from the allocator that was in place before. The
pool lives as long as the process.
"""

from libc.stdint cimport uintptr_t
from libc.stdlib cimport malloc
from posix.mman cimport MAP_ANONYMOUS, MAP_FAILED, MAP_PRIVATE, PROT_READ, PROT_WRITE, mmap


cdef extern from "Python.h":
    ctypedef struct PyObjectArenaAllocator:
        void* ctx
        void* (*alloc)(void* ctx, size_t size) noexcept nogil
        void (*free)(void* ctx, void* ptr, size_t size) noexcept nogil

    void PyObject_GetArenaAllocator(PyObjectArenaAllocator* allocator)
    void PyObject_SetArenaAllocator(PyObjectArenaAllocator* allocator)


include "pages.pxi"

cdef size_t SMALLEST_ARENA = 256 << 10  # pymalloc's arenas are 256 KiB or 1 MiB
cdef size_t ALIGN = 1 << 20  # pools within an arena are aligned: an aligned arena loses none

cdef PyObjectArenaAllocator previous
cdef PyObjectArenaAllocator pooled
cdef char* base = NULL
cdef size_t size = 0  # octets of the pool
cdef size_t used = 0  # octets from its start handed out at least once
cdef size_t arena = 0  # the arenas' size, learnt from the first request of an arena's size
cdef char** returned = NULL  # arenas given back to the pool, to hand out again
cdef size_t returned_count = 0


cdef void* _alloc(void* ctx, size_t n) noexcept nogil:
    global used, arena, returned_count
    # The allocator also serves the interpreter's frame stack in chunks of 16 KiB: those are
    # not arenas, and go to the previous allocator.
    if arena == 0 and n >= SMALLEST_ARENA:
        arena = n
    if n == arena:
        if returned_count:
            returned_count -= 1
            return returned[returned_count]
        if used + n <= size:
            used += n
            return base + used - n
    return previous.alloc(previous.ctx, n)


cdef void _free(void* ctx, void* p, size_t n) noexcept nogil:
    global returned_count
    if base <= <char*>p < base + size:
        returned[returned_count] = <char*>p
        returned_count += 1
    else:
        previous.free(previous.ctx, p, n)


def reserve(size_t octets):
    """Serve Python's small objects from a pool of ``octets``, its pages written now (once per
    process: a second call raises RuntimeError)."""
    global base, size, returned
    if base != NULL:
        raise RuntimeError("the arena pool is reserved once per process")
    if octets == 0:
        return
    cdef void* mapped = mmap(
        NULL, octets + ALIGN, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0
    )
    if mapped == MAP_FAILED:
        raise MemoryError(f"cannot map {octets} octets for the arena pool")
    cdef char* p = <char*>((<uintptr_t>mapped + ALIGN - 1) & ~(<uintptr_t>(ALIGN - 1)))
    returned = <char**>malloc((octets // SMALLEST_ARENA + 1) * sizeof(char*))
    if returned == NULL:
        raise MemoryError()
    with nogil:
        write_pages(p, octets)
    base, size = p, octets
    PyObject_GetArenaAllocator(&previous)
    pooled.ctx = NULL
    pooled.alloc = _alloc
    pooled.free = _free
    PyObject_SetArenaAllocator(&pooled)


def pooled_octets():
    """Octets of the pool handed out at least once (0: no pool)."""
    return used
