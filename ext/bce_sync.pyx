# cython: language_level=3, annotation_typing=False
"""State Synchronization replies straight from the LMA binding cache's columns: the compiled twin
of the engine's ``session_options`` + ``pack_sessions`` + ``encode_mh`` loop, through the one
State Sync writer (ext/state_sync.pxi, shared with ext/sync.pyx).

For a selection ``sel`` of binding cache rows the reference is::

    sessions = [session_options(cache, int(r), now, deleted=False) for r in sel]
    messages = pack_sessions([RestartCounter(restart_counter)], sessions)
    for k, (options, carried) in enumerate(messages):
        rep = StateSync(cp.SS_REPLY, identifier_k, flags_k, tuple(options))
        data_k = encode_mh(rep, src, dst, config)

``encode_sessions`` gives the same octets as one buffer plus offsets, in three passes: one with
the GIL reads the Python columns of the selected rows (MN identifier, prefix keys, MN link-layer
identifier) into C pointers, holding a reference to each object, and works out the remaining
lifetimes; then, without the GIL, one decides where each message starts and how long it is
(``pack_sessions``' greedy split), and the last writes the octets and checksums.

Each session is PBCI, MN-ID, one HNP per prefix key, ATT, [Timestamp when ts != 0],
[MN LL-ID when the ll_id is not None], [Link-local Address when lla is not ::], every option at
the alignment of spec-digest §1.2, as ``encode_options`` places it.
"""

import numpy as np

from lmaload.bce import BCE_DTYPE
from lmaload.bulk_types import SyncBatch
from lmaload.wire.codepoints import DEFAULT_CONFIG

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_Check, PyBytes_GET_SIZE
from cpython.list cimport PyList_GET_ITEM, PyList_GET_SIZE
from cpython.mem cimport PyMem_Free, PyMem_Malloc, PyMem_Realloc
from cpython.ref cimport PyObject, Py_INCREF, Py_XDECREF
from cpython.tuple cimport PyTuple_GET_ITEM, PyTuple_GET_SIZE
from libc.math cimport ceil, isinf, isnan
from libc.stdint cimport int64_t, uint8_t, uint16_t

from lmaload.wire import codepoints as cp

include "checksum.pxi"
include "binding_cache.pxi"

cdef uint8_t OPT_PAD1 = cp.OPT_PAD1
cdef uint8_t OPT_PADN = cp.OPT_PADN

include "octets.pxi"
include "state_sync.pxi"

cdef enum:
    PREFIX_KEY_LENGTH = 17


def stepped_identifier(start, k):
    """The Identifier of message ``k`` of a batch encoded with ``step_identifiers``: the engine's
    ``sync_id = sync_id % 0xFFFF + 1`` applied k + 1 times from ``start`` (1..65535, never 0),
    which is the one stepping rule (``stepped``) from the identifier after ``start``."""
    return stepped(int(start) % 0xFFFF + 1, k, 1)


cdef inline bint all_zero(const uint8_t* octets, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n):
        if octets[i]:
            return False
    return True


cdef inline bint host_bits_clear(const uint8_t* address, int prefix_length) noexcept nogil:
    """Whether the address has no bit set past the first ``prefix_length``."""
    cdef int i = prefix_length >> 3
    if prefix_length & 7:
        if address[i] & (0xFF >> (prefix_length & 7)):
            return False
        i += 1
    return all_zero(address + i, 16 - i)


cdef inline object column_item(object column, bint is_list, Py_ssize_t row):
    if is_list and row < PyList_GET_SIZE(column):
        return <object>PyList_GET_ITEM(column, row)
    return column[row]


cdef bytes address_octets(object address, str name):
    if hasattr(address, "packed"):
        address = address.packed
    if not isinstance(address, bytes) or len(address) != 16:
        raise ValueError(f"{name} is 16 octets (or an IPv6Address), got {address!r}")
    return address


cdef class _Refs:
    """The Python objects a pass without the GIL reads through C pointers, kept alive."""

    cdef PyObject** objects
    cdef Py_ssize_t count
    cdef Py_ssize_t capacity

    def __cinit__(self, Py_ssize_t capacity):
        self.capacity = capacity if capacity > 0 else 1
        self.objects = <PyObject**>PyMem_Malloc(self.capacity * sizeof(PyObject*))
        self.count = 0
        if self.objects == NULL:
            raise MemoryError()

    cdef inline void hold(self, object obj):
        # capacity is 3 per session (MN-ID, prefix key tuple, LL-ID): never exceeded
        Py_INCREF(obj)
        self.objects[self.count] = <PyObject*>obj
        self.count += 1

    def __dealloc__(self):
        cdef Py_ssize_t i
        for i in range(self.count):
            Py_XDECREF(self.objects[i])
        PyMem_Free(self.objects)


def encode_sessions(
    rows_array,
    mn_ids,
    prefix_keys,
    ll_ids,
    sel,
    double now,
    restart_counter,
    src16,
    dst16,
    identifier,
    bint step_identifiers=False,
    bint ack=False,
    bint more=False,
    config=DEFAULT_CONFIG,
):
    """SS-REPs carrying the sessions of binding cache rows ``sel``, octet for octet the
    reference loop of the module docstring; a ``SyncBatch`` (message k is
    ``buf[offsets[k]:offsets[k + 1]]`` and carries sessions ``first[k]`` to ``first[k + 1] - 1``
    of ``sel``).

    - ``rows_array``, ``mn_ids``, ``prefix_keys``, ``ll_ids``: the cache's ``rows``
      (BCE_DTYPE), ``mn_ids`` (bytes), ``prefix_keys`` (tuples of 17-octet keys) and ``ll_ids``
      (bytes or None), all of the same length. ``sel``: row numbers (negative ones count from
      the end, as numpy and list indexing do); rows are encoded whatever their state.
    - ``now``: the remaining lifetime is ``max(1, ceil((expires - now) / 4))`` capped at 0xFFFF
      (``session_options`` with ``deleted=False``).
    - ``restart_counter``: the Restart Counter option (u32) that leads every message, or None
      for no lead option.
    - ``src16``, ``dst16``: 16-octet addresses (bytes or IPv6Address) for the checksum's
      pseudo-header; either None leaves the checksum 0, as ``encode_mh`` does.
    - Identifiers: with ``step_identifiers``, message k has ``stepped_identifier(identifier, k)``
      = ``(identifier + k) % 0xFFFF + 1`` — the engine's ``sync_id = sync_id % 0xFFFF + 1`` run
      once per message from ``identifier`` = its current ``sync_id`` (so afterwards it sets
      ``sync_id = stepped_identifier(sync_id, count - 1)``). Without it every message carries
      ``identifier``. 0 <= identifier <= 0xFFFF, else ValueError.
    - Flags: A on every message when ``ack``; M on every message but the last when ``more``.
      Async batches: ``step_identifiers=True, ack=True``; an answer to an SS-REQ: the request's
      Identifier, ``more=True``.
    - An empty selection gives one message holding the lead option alone (as ``pack_sessions``).
    - ValueError, and nothing encoded, where the reference raises ValueError: a session that
      alone does not fit 2048 octets (``encode_mh``), an MN identifier over 254 octets or an
      MN link-layer identifier over 253 (``encode_options``), a prefix key that is not a valid
      network (``IPv6Network``, strict), a NaN expiry (``ceil``); an infinite expiry raises
      OverflowError, as ``ceil`` does, and so does a Restart Counter outside 32 bits.
    """
    dtype = rows_array.dtype
    if dtype is not BCE_DTYPE and dtype != BCE_DTYPE:
        raise TypeError(f"rows_array has dtype {rows_array.dtype}, not BCE_DTYPE")
    cdef const bce_t[::1] bces = rows_array
    cdef Py_ssize_t n_rows = bces.shape[0]
    if not (len(mn_ids) == len(prefix_keys) == len(ll_ids) == n_rows):
        raise ValueError("rows_array, mn_ids, prefix_keys and ll_ids differ in length")
    if not 0 <= identifier <= 0xFFFF:
        raise ValueError(f"identifier {identifier} is not a 16-bit value")
    if restart_counter is not None and not 0 <= restart_counter <= 0xFFFFFFFF:
        raise OverflowError(f"Restart Counter {restart_counter} is not a 32-bit value")
    cdef const int64_t[::1] sel_view = np.ascontiguousarray(sel, dtype=np.int64)
    cdef Py_ssize_t n = sel_view.shape[0]

    cdef ss_messages_t p
    cdef bytes src_packed = None, dst_packed = None
    p.mh_type = config.mh_state_sync
    p.pbci_type = config.opt_pbci
    p.ts_before_att = False
    p.realm = NULL
    p.realm_len = 0
    p.lead = restart_counter is not None
    p.restart_counter = restart_counter if p.lead else 0
    if step_identifiers:  # the engine's rule: the first message takes the identifier after it
        p.identifier = identifier % 0xFFFF + 1
        p.identifier_step = 1
    else:
        p.identifier = identifier
        p.identifier_step = 0
    p.ack_flag = SS_FLAG_A if ack else 0
    p.more = more
    p.src = NULL
    p.dst = NULL
    if src16 is not None and dst16 is not None:
        src_packed = address_octets(src16, "src16")
        dst_packed = address_octets(dst16, "dst16")
        p.src = <const uint8_t*>PyBytes_AS_STRING(src_packed)
        p.dst = <const uint8_t*>PyBytes_AS_STRING(dst_packed)

    cdef _Refs refs = _Refs(3 * n)
    cdef ss_session_t* sessions = <ss_session_t*>PyMem_Malloc(
        (n if n else 1) * sizeof(ss_session_t)
    )
    cdef Py_ssize_t key_capacity = n if n else 1
    cdef const uint8_t** keys = <const uint8_t**>PyMem_Malloc(key_capacity * sizeof(uint8_t*))
    cdef const uint8_t** grown
    if sessions == NULL or keys == NULL:
        PyMem_Free(sessions)
        PyMem_Free(keys)
        raise MemoryError()

    cdef bint mn_list = type(mn_ids) is list
    cdef bint keys_list = type(prefix_keys) is list
    cdef bint ll_list = type(ll_ids) is list
    cdef Py_ssize_t i, j, row, n_keys = 0, count, too_long = 0
    cdef ss_session_t* s
    cdef const bce_t* b
    cdef const uint8_t* key
    cdef object mn, row_keys, item, ll
    cdef double quarters
    cdef int plen
    cdef int64_t[::1] first_view, offsets_view
    cdef uint8_t[::1] buf_view
    try:
        for i in range(n):
            row = sel_view[i]
            if row < 0:
                row += n_rows
            if row < 0 or row >= n_rows:
                raise IndexError(f"row {sel_view[i]} is outside the {n_rows} binding cache rows")
            s = &sessions[i]
            b = &bces[row]
            s.flags = b.flags
            s.seq = b.seq
            s.tunnel = b.tunnel
            s.proxy_coa = b.proxy_coa
            s.att = b.att
            s.has_ts = b.ts != 0
            s.ts = b.ts
            s.lla = NULL if all_zero(b.lla, 16) else b.lla

            mn = column_item(mn_ids, mn_list, row)
            if not PyBytes_Check(mn):
                raise TypeError(f"mn_ids[{row}] is {type(mn).__name__}, not bytes")
            s.mn_len = PyBytes_GET_SIZE(mn)
            if 1 + s.mn_len > MAX_OPTION_LENGTH:
                raise ValueError(
                    f"Mobile Node Identifier option data is {1 + s.mn_len} octets, over 255"
                )
            s.mn_id = <const uint8_t*>PyBytes_AS_STRING(mn)
            refs.hold(mn)

            row_keys = column_item(prefix_keys, keys_list, row)
            if type(row_keys) is not tuple:
                row_keys = tuple(row_keys)
            refs.hold(row_keys)
            s.key0 = n_keys
            s.n_keys = PyTuple_GET_SIZE(row_keys)
            if n_keys + s.n_keys > key_capacity:
                key_capacity = 2 * (n_keys + s.n_keys)
                grown = <const uint8_t**>PyMem_Realloc(keys, key_capacity * sizeof(uint8_t*))
                if grown == NULL:
                    raise MemoryError()
                keys = grown
            for j in range(s.n_keys):
                item = <object>PyTuple_GET_ITEM(row_keys, j)
                if not PyBytes_Check(item) or PyBytes_GET_SIZE(item) != PREFIX_KEY_LENGTH:
                    raise ValueError(f"prefix key {item!r} of row {row} is not 17 octets")
                key = <const uint8_t*>PyBytes_AS_STRING(item)
                plen = key[16]
                if plen > 128 or not host_bits_clear(key, plen):
                    raise ValueError(f"prefix key {item.hex()} of row {row} is not a network")
                keys[n_keys] = key
                n_keys += 1

            ll = column_item(ll_ids, ll_list, row)
            if ll is None:
                s.ll_id = NULL
                s.ll_len = 0
            else:
                if not PyBytes_Check(ll):
                    raise TypeError(f"ll_ids[{row}] is {type(ll).__name__}, not bytes or None")
                s.ll_len = PyBytes_GET_SIZE(ll)
                if 2 + s.ll_len > MAX_OPTION_LENGTH:
                    raise ValueError(
                        f"Mobile Node Link-layer Identifier option data is {2 + s.ll_len} "
                        "octets, over 255"
                    )
                s.ll_id = <const uint8_t*>PyBytes_AS_STRING(ll)
                refs.hold(ll)

            quarters = ceil((b.expires - now) / 4)
            if isnan(quarters):
                raise ValueError(f"row {row}: cannot convert float NaN to integer")
            if isinf(quarters):
                raise OverflowError(f"row {row}: cannot convert float infinity to integer")
            if quarters < 1:
                s.lifetime = 1
            elif quarters > 0xFFFF:
                s.lifetime = 0xFFFF
            else:
                s.lifetime = <uint16_t>quarters

        first = np.empty(n + 2, dtype=np.int64)
        offsets = np.empty(n + 2, dtype=np.int64)
        first_view = first
        offsets_view = offsets
        with nogil:
            count = layout(
                &p, sessions, n, MH_MAX_LENGTH, &first_view[0], &offsets_view[0], &too_long
            )
        if count < 0:
            row = sel_view[too_long]
            raise ValueError(
                f"the session of row {row} alone exceeds the {MH_MAX_LENGTH}-octet MH limit"
            )
        buf = np.empty(offsets_view[count], dtype=np.uint8)
        buf_view = buf
        with nogil:
            write_messages(
                &p, sessions, keys, &first_view[0], &offsets_view[0], count, &buf_view[0]
            )
        return SyncBatch(buf, offsets[: count + 1].copy(), first[: count + 1].copy())
    finally:
        PyMem_Free(sessions)
        PyMem_Free(keys)
