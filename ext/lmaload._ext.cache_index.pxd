# The C interface of ext/cache_index.pyx's binding-cache index (module lmaload._ext.cache_index;
# the dotted name is how Cython finds it for a cimport from another module of ext/), so that the
# compiled writers of the cache (ext/cache_rows.pxi) look up and index rows without a Python call.
# Rows are held plus one: 0 is an empty slot (tables are zeroed memory), -1 a slot left by an
# entry that moved on to the grown table.
from libc.stdint cimport int32_t, uint8_t, uint32_t


ctypedef struct mn_slot_t:
    uint32_t tag  # the low 32 bits of the MN identifier's hash
    int32_t head  # the MN's first row, plus one

ctypedef struct prefix_slot_t:
    int32_t row  # plus one
    uint8_t key[17]

ctypedef struct spare_t:
    char* p  # the table the next growth will take, NULL while there is none
    size_t size  # its octets
    size_t due  # octets from its start whose pages are to be written by now
    size_t touched  # octets from its start whose pages have been written (whole pages)

ctypedef struct mag_slot_t:
    uint8_t mag[16]
    int32_t head  # the MAG's first row, plus one; 0: none
    int32_t count  # its rows
    int32_t used  # whether the slot holds a MAG


cdef class CacheIndex:
    cdef list mn_ids
    # The tables, and while one grows the one it replaces (NULL otherwise), whose slots below
    # the cursor have moved on.
    cdef mn_slot_t* mn_slots
    cdef mn_slot_t* mn_old
    cdef prefix_slot_t* prefix_slots
    cdef prefix_slot_t* prefix_old
    cdef mag_slot_t* mag_slots
    # The next grown tables, mapped once a table is half full and their pages written a few at
    # a time with each insert after that.
    cdef spare_t mn_spare, prefix_spare
    cdef Py_ssize_t mn_mask, mn_old_mask, mn_cursor
    cdef Py_ssize_t prefix_mask, prefix_old_mask, prefix_cursor
    cdef Py_ssize_t mag_mask
    cdef readonly Py_ssize_t mn_count, prefix_count, mag_count
    cdef int32_t* mn_next
    cdef int32_t* mag_next
    cdef int32_t* mag_prev
    cdef int32_t* free_rows
    cdef readonly Py_ssize_t rows, free_count
    cdef Py_ssize_t in_state[256]  # rows by the value of their state octet

    cdef Py_ssize_t find_mn(self, const uint8_t* mn, Py_ssize_t n) except -2
    cdef Py_ssize_t next_of_mn(self, Py_ssize_t row) noexcept nogil
    cdef Py_ssize_t find_prefix(self, const uint8_t* key) noexcept nogil
    cdef Py_ssize_t take_row(self) noexcept nogil
    cdef int add(self, Py_ssize_t row, bytes mn, const uint8_t* key, const uint8_t* mag) except -1
    cdef int _check(self, Py_ssize_t row) except -1
    cdef Py_ssize_t _mn_find_in(
        self, mn_slot_t* slots, Py_ssize_t mask, const uint8_t* mn, Py_ssize_t n, uint32_t tag,
        Py_ssize_t* empty,
    ) except -2
    cdef Py_ssize_t _mn_locate(self, const uint8_t* mn, Py_ssize_t n, uint32_t tag) except -1
    cdef Py_ssize_t _prefix_locate(self, const uint8_t* key) noexcept nogil
    cdef Py_ssize_t _mag_probe(self, const uint8_t* mag) noexcept nogil
    cdef int _add_mn(self, Py_ssize_t row, bytes mn) except -1
    cdef int _remove_mn(self, Py_ssize_t row, bytes mn) except -1
    cdef int _add_prefix(self, Py_ssize_t row, const uint8_t* key) except -1
    cdef int _add_mag(self, Py_ssize_t row, const uint8_t* mag) except -1
    cdef int _remove_mag(self, Py_ssize_t row, const uint8_t* mag) except -1
    cdef void _delete_mn_slot(self, Py_ssize_t hole) noexcept nogil
    cdef void _delete_prefix_slot(self, Py_ssize_t hole) noexcept nogil
    cdef int _mn_room(self) except -1
    cdef int _prefix_room(self) except -1
    cdef void _mn_move_on(self, Py_ssize_t slots) noexcept nogil
    cdef void _prefix_move_on(self, Py_ssize_t slots) noexcept nogil
    cdef int _grow_mags(self) except -1
