# cython: language_level=3, annotation_typing=False
"""State Synchronization replies straight from the LMA binding cache's columns: the compiled twin
of the engine's ``session_options`` + ``pack_sessions`` + ``encode_mh`` loop.

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

from lmaload.bulk_types import SyncBatch
from lmaload.bce import BCE_DTYPE
from lmaload.wire.codepoints import DEFAULT_CONFIG

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_Check, PyBytes_GET_SIZE
from cpython.list cimport PyList_GET_ITEM, PyList_GET_SIZE
from cpython.mem cimport PyMem_Free, PyMem_Malloc, PyMem_Realloc
from cpython.ref cimport PyObject, Py_INCREF, Py_XDECREF
from cpython.tuple cimport PyTuple_GET_ITEM, PyTuple_GET_SIZE
from libc.math cimport ceil, isinf, isnan
from libc.stdint cimport int64_t
from libc.string cimport memcpy, memset

include "checksum.pxi"
include "binding_cache.pxi"

cdef enum:
    IPPROTO_MH = 135
    PAYLOAD_PROTO_NONE = 59
    OPT_PAD1 = 0
    OPT_PADN = 1
    OPT_MN_IDENTIFIER = 8
    OPT_HOME_NETWORK_PREFIX = 22
    OPT_ACCESS_TECHNOLOGY_TYPE = 24
    OPT_MN_LINK_LAYER_ID = 25
    OPT_LINK_LOCAL_ADDRESS = 26
    OPT_TIMESTAMP = 27
    OPT_RESTART_COUNTER = 28
    MNID_SUBTYPE_NAI = 1
    SS_REPLY = 1
    SS_FLAG_A = 0x80
    SS_FLAG_M = 0x40
    MH_MAX_LENGTH = 2048
    OPTIONS_START = 10  # MH header (6) and the SS fixed part: type, flags, Identifier
    LEAD_END = 16  # after a Restart Counter at OPTIONS_START (already at 4n+2)
    PBCI_LENGTH = 28
    MAX_OPTION_LENGTH = 255
    PREFIX_KEY_LENGTH = 17


include "octets.pxi"


cdef struct session_t:
    const bce_t* bce
    const uint8_t* mn_id
    Py_ssize_t mn_len
    Py_ssize_t key0  # index of its first prefix key in the flat key array
    Py_ssize_t n_keys
    const uint8_t* ll_id  # NULL: no MN LL-ID option
    Py_ssize_t ll_len
    uint16_t remaining  # PBCI lifetime, 4-second units
    bint has_lla


def stepped_identifier(start, k):
    """The Identifier of message ``k`` of a batch encoded with ``step_identifiers``: the engine's
    ``sync_id = sync_id % 0xFFFF + 1`` applied k + 1 times from ``start`` (1..65535, never 0)."""
    return (int(start) + int(k)) % 0xFFFF + 1


cdef inline Py_ssize_t session_end(
    const session_t* s, Py_ssize_t off
) noexcept nogil:
    """MH offset after the session when it follows options ending at ``off``."""
    cdef Py_ssize_t k
    off += (2 - off) & 7  # PBCI at 8n+2
    off += 2 + PBCI_LENGTH
    off += 3 + s.mn_len  # MN-ID, no alignment
    for k in range(s.n_keys):
        off += (4 - off) & 7  # HNP at 8n+4
        off += 20
    off += 4  # ATT, no alignment
    if s.bce.ts:
        off += (2 - off) & 7  # Timestamp at 8n+2
        off += 10
    if s.ll_id != NULL:
        off += off & 1  # MN LL-ID at 2n
        off += 4 + s.ll_len
    if s.has_lla:
        off += (6 - off) & 7  # Link-local Address at 8n+6
        off += 18
    return off


cdef inline Py_ssize_t padded(Py_ssize_t end) noexcept nogil:
    return (end + 7) & ~(<Py_ssize_t>7)


cdef Py_ssize_t layout(
    const session_t* sessions, Py_ssize_t n, Py_ssize_t start, int64_t* first,
    int64_t* offsets, Py_ssize_t* too_long,
) noexcept nogil:
    """``pack_sessions``: a session joins the current message iff the message with it, padded,
    stays within 2048 octets, else it starts the next one. Fills ``first`` and ``offsets``
    (count + 1 entries) and returns the count of messages, or -1 when a message would exceed
    the limit (a session alone too long; its index in ``too_long``)."""
    cdef Py_ssize_t i, m = 0, cur_first = 0, carried = 0, off = start, e, length
    offsets[0] = 0
    for i in range(n):
        e = session_end(&sessions[i], off)
        if carried and padded(e) > MH_MAX_LENGTH:
            length = padded(off)
            if length > MH_MAX_LENGTH:
                too_long[0] = cur_first
                return -1
            first[m] = cur_first
            offsets[m + 1] = offsets[m] + length
            m += 1
            cur_first = i
            carried = 0
            e = session_end(&sessions[i], start)
        carried += 1
        off = e
    length = padded(off)  # the last message; with no sessions, the lead alone
    if length > MH_MAX_LENGTH:
        too_long[0] = cur_first
        return -1
    first[m] = cur_first
    offsets[m + 1] = offsets[m] + length
    m += 1
    first[m] = n
    return m


cdef Py_ssize_t write_session(
    const session_t* s, const uint8_t* const* keys, uint8_t* mh, Py_ssize_t off,
    uint8_t pbci_type,
) noexcept nogil:
    """The session at MH offset ``off``; returns the offset after it (``session_end``)."""
    cdef const bce_t* b = s.bce
    cdef const uint8_t* key
    cdef uint8_t* q
    cdef Py_ssize_t k

    off = put_padding(mh, off, (2 - off) & 7)
    q = mh + off
    q[0] = pbci_type
    q[1] = PBCI_LENGTH
    put_be16(q + 2, b.flags)
    put_be16(q + 4, b.seq)
    put_be16(q + 6, s.remaining)
    q[8] = 0
    q[9] = 0
    put_be32(q + 10, b.tunnel)
    memcpy(q + 14, b.proxy_coa, 16)
    off += 2 + PBCI_LENGTH

    q = mh + off
    q[0] = OPT_MN_IDENTIFIER
    q[1] = <uint8_t>(1 + s.mn_len)
    q[2] = MNID_SUBTYPE_NAI
    memcpy(q + 3, s.mn_id, s.mn_len)
    off += 3 + s.mn_len

    for k in range(s.n_keys):
        key = keys[s.key0 + k]
        off = put_padding(mh, off, (4 - off) & 7)
        q = mh + off
        q[0] = OPT_HOME_NETWORK_PREFIX
        q[1] = 18
        q[2] = 0
        q[3] = key[16]
        memcpy(q + 4, key, 16)
        off += 20

    q = mh + off
    q[0] = OPT_ACCESS_TECHNOLOGY_TYPE
    q[1] = 2
    q[2] = 0
    q[3] = b.att
    off += 4

    if b.ts:
        off = put_padding(mh, off, (2 - off) & 7)
        q = mh + off
        q[0] = OPT_TIMESTAMP
        q[1] = 8
        put_be64(q + 2, b.ts)
        off += 10

    if s.ll_id != NULL:
        off = put_padding(mh, off, off & 1)
        q = mh + off
        q[0] = OPT_MN_LINK_LAYER_ID
        q[1] = <uint8_t>(2 + s.ll_len)
        q[2] = 0
        q[3] = 0
        memcpy(q + 4, s.ll_id, s.ll_len)
        off += 4 + s.ll_len

    if s.has_lla:
        off = put_padding(mh, off, (6 - off) & 7)
        q = mh + off
        q[0] = OPT_LINK_LOCAL_ADDRESS
        q[1] = 16
        memcpy(q + 2, b.lla, 16)
        off += 18
    return off


cdef struct message_params_t:
    uint8_t mh_type
    uint8_t pbci_type
    bint lead  # a Restart Counter option first
    uint32_t restart_counter
    uint16_t identifier
    bint step_identifiers
    uint8_t ack_flag
    bint more
    const uint8_t* src  # NULL: checksum left 0
    const uint8_t* dst


cdef void write_messages(
    const message_params_t* p, const session_t* sessions, const uint8_t* const* keys,
    const int64_t* first, const int64_t* offsets, Py_ssize_t count, uint8_t* out,
) noexcept nogil:
    cdef Py_ssize_t k, i, off, length
    cdef uint8_t* mh
    cdef uint64_t s
    cdef uint16_t ident
    for k in range(count):
        mh = out + offsets[k]
        length = offsets[k + 1] - offsets[k]
        mh[0] = PAYLOAD_PROTO_NONE
        mh[1] = <uint8_t>(length // 8 - 1)
        mh[2] = p.mh_type
        mh[3] = 0
        mh[4] = 0
        mh[5] = 0
        mh[6] = SS_REPLY
        mh[7] = p.ack_flag | (SS_FLAG_M if p.more and k < count - 1 else 0)
        if p.step_identifiers:
            ident = <uint16_t>((<int64_t>p.identifier + k) % 0xFFFF + 1)
        else:
            ident = p.identifier
        put_be16(mh + 8, ident)
        off = OPTIONS_START
        if p.lead:
            mh[off] = OPT_RESTART_COUNTER
            mh[off + 1] = 4
            put_be32(mh + off + 2, p.restart_counter)
            off = LEAD_END
        for i in range(first[k], first[k + 1]):
            off = write_session(&sessions[i], keys, mh, off, p.pbci_type)
        put_padding(mh, off, length - off)
        if p.src != NULL:
            s = csum_pseudo_header(p.src, p.dst, length, IPPROTO_MH) + csum_add(mh, length)
            put_be16(mh + 4, csum_fold(s))


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

    cdef message_params_t p
    cdef bytes src_packed = None, dst_packed = None
    p.mh_type = config.mh_state_sync
    p.pbci_type = config.opt_pbci
    p.lead = restart_counter is not None
    p.restart_counter = restart_counter if p.lead else 0
    p.identifier = identifier
    p.step_identifiers = step_identifiers
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
    cdef session_t* sessions = <session_t*>PyMem_Malloc((n if n else 1) * sizeof(session_t))
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
    cdef session_t* s
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
            s.bce = &bces[row]

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

            quarters = ceil((s.bce.expires - now) / 4)
            if isnan(quarters):
                raise ValueError(f"row {row}: cannot convert float NaN to integer")
            if isinf(quarters):
                raise OverflowError(f"row {row}: cannot convert float infinity to integer")
            if quarters < 1:
                s.remaining = 1
            elif quarters > 0xFFFF:
                s.remaining = 0xFFFF
            else:
                s.remaining = <uint16_t>quarters
            s.has_lla = not all_zero(s.bce.lla, 16)

        first = np.empty(n + 2, dtype=np.int64)
        offsets = np.empty(n + 2, dtype=np.int64)
        first_view = first
        offsets_view = offsets
        with nogil:
            count = layout(
                sessions, n, LEAD_END if p.lead else OPTIONS_START, &first_view[0],
                &offsets_view[0], &too_long,
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
