# The C interface of ext/bulk.pyx's PBU encoder (module lmaload._ext.bulk; the dotted name is how
# Cython finds it for a cimport from another module of ext/), so that compiled callers
# (ext/mag_serve.pxi) encode into their own buffers without a Python call.
from libc.stdint cimport int64_t, uint8_t, uint64_t


cdef class PbuEncoder:
    cdef void* batch  # a pbu_batch_t (bulk.pyx)
    cdef void* templates  # its template_t per layout
    cdef uint64_t* mag_sum
    cdef object pop, mags_a, nais
    cdef bytes realm
    cdef Py_ssize_t longest

    cdef Py_ssize_t room(self, Py_ssize_t n) noexcept nogil
    cdef int encode_rows(
        self, const int64_t* rows, Py_ssize_t n, const void* mns, Py_ssize_t n_mns, uint8_t* out,
        int64_t* offsets,
    ) except -1
