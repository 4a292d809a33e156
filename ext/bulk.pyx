# cython: language_level=3
"""Compiled twins of the bulk codec in lmaload/bulk.py: PBU and Heartbeat encoders writing many
messages into one buffer, and PBA / Heartbeat / SS-ACK decoders filling numpy records.

Each function has the signature of its ``py_`` twin and must give the same octets and records
for every input, malformed ones included. The per-message loops run without the GIL and create
no Python objects; everything that depends only on the call's arguments is prepared once.

Checksums are built from parts instead of re-reading each message. Two facts make that work
(RFC 1071): 2^16 = 1 (mod 0xFFFF), so a big-endian field of value v ending at an even MH offset
adds v (mod 0xFFFF) to the sum, and one ending at an odd offset adds 256 * v; and a word loaded
in native (little-endian) order is the big-endian word times 256. The code keeps two sums, ``a``
(weight 1) and ``b`` (weight 256), and combines them once per message.
"""

import functools
import struct

import numpy as np

cimport numpy as cnp
from libc.stdint cimport int8_t, int32_t
from libc.stdlib cimport free, malloc
from libc.string cimport memchr, memcpy, memset

from lmaload import bulk_types
from lmaload.bulk_types import DEFAULT_PBU_OPTIONS, HEARTBEAT_DTYPE, PBA_DTYPE, SS_ACK_DTYPE
from lmaload.population import MAG_DTYPE, MN_DTYPE
from lmaload.wire import codepoints as cp
from lmaload.wire import messages as wm
from lmaload.wire import options as wo
from lmaload.wire.codepoints import DEFAULT_CONFIG

include "checksum.pxi"
include "population.pxi"

cnp.import_array()


cdef extern from *:
    void prefetch "__builtin_prefetch"(const void*) noexcept nogil
    uint32_t bswap32 "__builtin_bswap32"(uint32_t) noexcept nogil
    uint64_t bswap64 "__builtin_bswap64"(uint64_t) noexcept nogil


cdef enum:
    IPV6_HEADER = 40
    MH_HEADER = 6
    MAX_OPTION = 255

# The reference's code points, as C values for the loops without the GIL.
cdef uint8_t IPPROTO_MH = cp.IPPROTO_MH
cdef uint8_t PAYLOAD_PROTO_NONE = cp.PAYLOAD_PROTO_NONE
cdef uint8_t MH_BINDING_UPDATE = cp.MH_BINDING_UPDATE
cdef uint8_t MH_HEARTBEAT = cp.MH_HEARTBEAT
cdef uint8_t OPT_PAD1 = cp.OPT_PAD1
cdef uint8_t OPT_PADN = cp.OPT_PADN
cdef uint8_t MNID_SUBTYPE_NAI = cp.MNID_SUBTYPE_NAI
cdef uint8_t SS_ACK = cp.SS_ACK
cdef uint8_t PBCI_FIXED_LENGTH = wo.PBCI_FIXED_LENGTH
cdef uint32_t NO_MN_ID = bulk_types.NO_MN_ID


include "octets.pxi"
include "mh_heartbeat.pxi"
include "nai_index.pxi"
include "decimal.pxi"


cdef object c_array(arr, dtype):
    """arr as a C-contiguous array of dtype, whose layout a packed struct here mirrors (checked
    once at import: a typed memoryview per call costs more than a small batch's work)."""
    arr = np.ascontiguousarray(arr)
    if arr.dtype != dtype:
        raise TypeError(f"expected an array of {dtype}, got {arr.dtype}")
    return arr


# ---------------------------------------------------------------------------------------------
# PBU encoder
#
# Everything in a PBU is fixed by the call except per-row fields, the NAI's length (0..254:
# for a derived NAI mn{digits}@realm, its digits' 1..10) and the MN LL-ID's length (0..8). Those
# two fix the layout (padding depends on where the MN-ID option ends), so each (NAI length, LL-ID
# length) pair gets a template: the whole message with zeros in the per-row fields (a stored
# NAI is one, a derived NAI's digits are), where they go, and the checksum sum of its constant
# octets.

cdef enum:
    NAI_AT = 35           # after HNP (12..31) and MN-ID Type, Length, Subtype (32..34)
    NAI_DIGITS_AT = 37    # a derived NAI's digits, after "mn"
    MAX_NAI = 254         # the MN-ID option's data (subtype + NAI) is at most 255 octets
    MAX_TEMPLATE = 1024   # > 289 (MN-ID's end, data <= 255) + 356 (padded tail options)
    MAX_TAIL = 8

cdef enum:  # per-row field carried by a tail option's data
    F_NONE, F_TS, F_HI, F_ATT, F_LL, F_HOA, F_COA


cdef struct tail_option_t:
    uint8_t x, y          # alignment xn+y of the Type octet
    uint8_t type
    uint8_t length        # option data length (F_LL: without the identifier)
    uint8_t field
    uint8_t data[MAX_OPTION]


cdef struct template_t:
    int32_t length
    int32_t ts_at, hi_at, att_at, ll_at, hoa_at, coa_at   # MH offsets of per-row fields, -1
    uint32_t hi_shift, att_shift   # 8 for a one-octet field at an even offset
    uint64_t sum          # constant octets and the pseudo-header length, weight 1
    uint8_t data[MAX_TEMPLATE]


cdef enum:
    ERR_ROW = 1
    ERR_MAG = 2
    ERR_NAI = 3
    PREFETCH_AHEAD = 32   # rows; found by measurement (sequential and random rows)
    COPY_BLOCK = 96       # see copy_template
    MIN_PBU = 48
    LAYOUTS = (MAX_NAI + 1) * 9  # NAI length 0..254 by LL-ID length 0..8 (ll_id's size)


cdef struct pbu_batch_t:
    const int64_t* rows
    Py_ssize_t n
    const mn_t* mns
    Py_ssize_t n_mns
    const mag_t* mags
    Py_ssize_t n_mags
    const uint64_t* mag_sum      # pseudo-header sum per MAG
    bint request_prefix
    bint link_layer_id
    uint8_t head[NAI_AT]         # MH header to the NAI, per-row fields zero
    const uint8_t* realm
    int realm_length
    const uint8_t* nai_blob      # stored NAIs (row i's at nai_offsets[i]..), NULL: derived
    const int64_t* nai_offsets
    tail_option_t tail[MAX_TAIL]  # the options after the MN-ID
    int tail_count
    template_t* templates        # [NAI length][LL-ID length], built when first needed
    uint8_t built[LAYOUTS]
    uint8_t* out
    int64_t* offsets
    Py_ssize_t failed            # index of the row that raised the error


cdef int add_tail_option(
    pbu_batch_t* c, int x, int y, int type_code, bytes data, int field
) except -1:
    cdef tail_option_t* o = &c.tail[c.tail_count]
    if len(data) > MAX_OPTION:
        raise ValueError(f"option type {type_code} data is {len(data)} octets, over 255")
    o.x, o.y, o.type, o.length, o.field = x, y, type_code, len(data), field
    memcpy(o.data, <const char*>data, len(data))
    c.tail_count += 1
    return 0


cdef void build_template(
    template_t* t, const pbu_batch_t* c, int nai_length, int ll_length
) noexcept nogil:
    """The encode_options algorithm (spec-digest §1.2) from MH offset 12, for one layout."""
    cdef uint8_t* p = t.data
    cdef int pos = NAI_AT + nai_length, k, length, at
    cdef const tail_option_t* o
    t.ts_at = t.hi_at = t.att_at = t.ll_at = t.hoa_at = t.coa_at = -1
    memcpy(p, c.head, NAI_AT)
    p[33] = 1 + nai_length
    memset(p + NAI_AT, 0, nai_length)
    if c.nai_blob == NULL:  # "mn", the digits (zero), "@" and the realm
        memcpy(p + NAI_AT, b"mn", 2)
        p[pos - 1 - c.realm_length] = 64
        memcpy(p + pos - c.realm_length, c.realm, c.realm_length)
    for k in range(c.tail_count):
        o = &c.tail[k]
        if o.field == F_LL and ll_length == 0:
            continue
        pos = pad(p, pos, o.x, o.y)
        length = o.length + (ll_length if o.field == F_LL else 0)
        p[pos] = o.type
        p[pos + 1] = length
        memcpy(p + pos + 2, o.data, o.length)
        memset(p + pos + 2 + o.length, 0, length - o.length)
        # Where the per-row value goes: after Type and Length, and a reserved octet or two.
        at = pos + 2
        if o.field == F_TS:
            t.ts_at = at
        elif o.field == F_HI:
            t.hi_at = at + 1
        elif o.field == F_ATT:
            t.att_at = at + 1
        elif o.field == F_LL:
            t.ll_at = at + 2
        elif o.field == F_HOA:
            t.hoa_at = at + 2
        elif o.field == F_COA:
            t.coa_at = at + 2
        pos += 2 + length
    pos = pad(p, pos, 8, 0)
    p[1] = pos // 8 - 1
    t.length = pos
    t.hi_shift = 8 if t.hi_at % 2 == 0 else 0
    t.att_shift = 8 if t.att_at % 2 == 0 else 0
    t.sum = csum_add(p, pos) + pos
    if pos < COPY_BLOCK:
        memset(p + pos, 0, COPY_BLOCK - pos)


cdef inline void copy_template(uint8_t* p, const uint8_t* s, Py_ssize_t n) noexcept nogil:
    """s[0:n] to p. The first COPY_BLOCK octets go as six 16-octet moves (GCC makes a longer
    or variable-length copy a ``rep movs`` or a call to memcpy, both slow for one message);
    that writes up to COPY_BLOCK - MIN_PBU octets past n, which the next message overwrites."""
    memcpy(p, s, 16)
    memcpy(p + 16, s + 16, 16)
    memcpy(p + 32, s + 32, 16)
    memcpy(p + 48, s + 48, 16)
    memcpy(p + 64, s + 64, 16)
    memcpy(p + 80, s + 80, 16)
    if n > COPY_BLOCK:
        memcpy(p + COPY_BLOCK, s + COPY_BLOCK, n - COPY_BLOCK)


cdef int encode_pbu_rows(pbu_batch_t* c) noexcept nogil:
    """Write the PBUs of c.rows; returns 0, or an ERR_ code for row c.failed."""
    # Locals, not c's fields: every store through the uint8_t output may alias them.
    cdef const int64_t* rows = c.rows
    cdef const mn_t* mns = c.mns
    cdef const mag_t* mags = c.mags
    cdef const uint64_t* mag_sum = c.mag_sum
    cdef const uint8_t* nai_blob = c.nai_blob
    cdef const int64_t* nai_offsets = c.nai_offsets
    cdef template_t* templates = c.templates
    cdef int64_t* offsets = c.offsets
    cdef Py_ssize_t n = c.n, n_mns = c.n_mns, n_mags = c.n_mags
    cdef bint request_prefix = c.request_prefix, link_layer_id = c.link_layer_id
    cdef uint8_t* p = c.out
    cdef Py_ssize_t i, row, mag, length, nai_at, nai_length, total = 0
    cdef const mn_t* mn
    cdef template_t* t
    cdef int d, l, layout
    cdef uint32_t mn_id
    cdef uint16_t seq
    cdef uint8_t hi, att
    cdef int32_t ts_at, hi_at, att_at
    cdef uint64_t a, b, v, ts
    for i in range(n):
        if i + PREFETCH_AHEAD < n:
            prefetch(<const uint8_t*>(mns + rows[i + PREFETCH_AHEAD]))
            prefetch(<const uint8_t*>(mns + rows[i + PREFETCH_AHEAD]) + 63)
        c.failed = i
        row = wrap_index(rows[i], n_mns)
        if row < 0:
            return ERR_ROW
        mn = &mns[row]
        mag = mn.mag
        if mag >= n_mags:
            return ERR_MAG
        mn_id, seq, hi, att, ts = mn.mn_id, mn.seq, mn.hi, mn.att, mn.ts
        if nai_blob == NULL:
            d = decimal_length(mn_id)
            nai_length = 3 + d + c.realm_length
        else:
            nai_at = nai_offsets[row]
            nai_length = nai_offsets[row + 1] - nai_at
        if nai_length > MAX_NAI:
            return ERR_NAI
        l = min(mn.ll_len, 8) if link_layer_id else 0
        layout = nai_length * 9 + l
        t = &templates[layout]
        if not c.built[layout]:
            build_template(t, c, nai_length, l)
            c.built[layout] = 1
        length, ts_at, hi_at, att_at = t.length, t.ts_at, t.hi_at, t.att_at
        a = t.sum + mag_sum[mag] + seq
        a += (<uint64_t>hi << t.hi_shift) + (<uint64_t>att << t.att_shift)
        b = 0
        copy_template(p, t.data, length)
        put_be16(p + 6, seq)
        if nai_blob == NULL:
            # The digits end at 37 + d: an even offset (weight 1) when d is odd.
            v = write_decimal(p + NAI_DIGITS_AT + d, mn_id)
            if d & 1:
                a += v
            else:
                b += v
        elif nai_length:  # from the odd offset 35: one low octet, then whole words
            memcpy(p + NAI_AT, nai_blob + nai_at, nai_length)
            a += p[NAI_AT] + csum_add(p + NAI_AT + 1, nai_length - 1)
        if ts_at >= 0:
            v = bswap64(ts)
            memcpy(p + ts_at, &v, 8)
            a += halves(ts)
        p[hi_at] = hi
        p[att_at] = att
        if request_prefix:
            p[15] = mn.hnp_len
            memcpy(p + 16, mn.hnp, 16)
            a += mn.hnp_len
            b += halves(load64(mn.hnp)) + halves(load64(mn.hnp + 8))
        if l:
            memcpy(p + t.ll_at, mn.ll_id, l)
            b += halves(load64(mn.ll_id) & (~(<uint64_t>0) >> (64 - 8 * l)))
        if t.hoa_at >= 0:
            memcpy(p + t.hoa_at, mn.ipv4_hoa, 4)
            b += load32(mn.ipv4_hoa)
        if t.coa_at >= 0:
            memcpy(p + t.coa_at, mags[mag].addr4, 4)
        put_be16(p + 4, finish(a, b))
        p += length
        total += length
        offsets[i + 1] = total
    return 0


cdef class PbuEncoder:
    """encode_pbus' preparation for one (population, LMA, flags, lifetime, options, config) —
    header, tail options, per-MAG pseudo-header sums, the templates as layouts come up — kept
    for every call of ``encode``, which reads the rows' current columns. The population's MAG
    table must not change while the encoder is in use."""

    def __cinit__(
        self,
        pop,
        lma,
        flags=cp.PBU_DEFAULT_FLAGS,
        lifetime=0,
        options=DEFAULT_PBU_OPTIONS,
        config=DEFAULT_CONFIG,
    ):
        struct.pack("!HH", flags, lifetime)  # the reference's struct.error for out-of-range values
        self.pop = pop
        self.mags_a = c_array(pop.mags, MAG_DTYPE)
        cdef const mag_t* mags = <const mag_t*>cnp.PyArray_DATA(<cnp.ndarray>self.mags_a)
        cdef Py_ssize_t n_mags = len(self.mags_a), m
        self.realm = pop.realm.encode()
        cdef bytes lma_packed = lma.packed
        cdef int k
        cdef uint64_t pseudo
        self.batch = malloc(sizeof(pbu_batch_t))
        self.templates = malloc(LAYOUTS * sizeof(template_t))
        self.mag_sum = <uint64_t*>malloc(max(n_mags, 1) * sizeof(uint64_t))
        if not self.batch or not self.templates or not self.mag_sum:
            raise MemoryError()
        cdef pbu_batch_t* c = <pbu_batch_t*>self.batch
        # MH header, fixed part, HNP (ALL_ZERO ::/0 unless per row), MN-ID up to the digits.
        memset(c.head, 0, NAI_AT)
        c.head[0] = PAYLOAD_PROTO_NONE
        c.head[2] = MH_BINDING_UPDATE
        put_be16(c.head + 8, int(flags))
        put_be16(c.head + 10, int(lifetime))
        c.head[12] = cp.OPT_HOME_NETWORK_PREFIX
        c.head[13] = 18
        c.head[32] = cp.OPT_MN_IDENTIFIER
        c.head[34] = MNID_SUBTYPE_NAI
        c.realm = self.realm
        c.realm_length = len(self.realm)
        c.nai_blob, c.nai_offsets = NULL, NULL
        if pop.nais is None:
            longest_nai = 3 + 10 + c.realm_length
        else:
            self.nais = (
                np.ascontiguousarray(pop.nais.blob, dtype=np.uint8),
                np.ascontiguousarray(pop.nais.offsets, dtype=np.int64),
            )
            if len(self.nais[1]) != len(pop.mns) + 1:
                raise ValueError("the population's NAI column is not one NAI a row")
            c.nai_blob = <const uint8_t*>cnp.PyArray_DATA(<cnp.ndarray>self.nais[0])
            c.nai_offsets = <const int64_t*>cnp.PyArray_DATA(<cnp.ndarray>self.nais[1])
            longest_nai = int(np.diff(self.nais[1]).max(initial=0))
        c.link_layer_id = bool(options.link_layer_id)
        c.request_prefix = bool(options.request_prefix)
        c.tail_count = 0
        if options.timestamp:
            add_tail_option(c, 8, 2, cp.OPT_TIMESTAMP, bytes(8), F_TS)
        add_tail_option(c, 1, 0, cp.OPT_HANDOFF_INDICATOR, bytes(2), F_HI)
        add_tail_option(c, 1, 0, cp.OPT_ACCESS_TECHNOLOGY_TYPE, bytes(2), F_ATT)
        if c.link_layer_id:
            add_tail_option(c, 2, 0, cp.OPT_MN_LINK_LAYER_ID, bytes(2), F_LL)
        if options.link_local:  # ALL_ZERO: the LMA supplies one
            add_tail_option(c, 8, 6, cp.OPT_LINK_LOCAL_ADDRESS, bytes(16), F_NONE)
        if options.ipv4_hoa_request:
            add_tail_option(c, 4, 0, cp.OPT_IPV4_HOA_REQUEST, bytes(6), F_HOA)
        if options.ipv4_coa:
            add_tail_option(c, 4, 0, cp.OPT_IPV4_COA, bytes(6), F_COA)
        if options.lfi is not None:
            x, y = options.lfi.ALIGN
            code = options.lfi.type_code(config)
            add_tail_option(c, x, y, code, options.lfi.pack(), F_NONE)
        memset(c.built, 0, LAYOUTS)
        c.templates = <template_t*>self.templates

        # Pseudo-header per MAG (its Proxy-CoA, the LMA, next header), plus its IPv4 CoA option
        # data, which always sits at an even offset.
        pseudo = csum_add(lma_packed, 16) + IPPROTO_MH
        for m in range(n_mags):
            self.mag_sum[m] = pseudo + csum_add(mags[m].addr6, 16)
            if options.ipv4_coa:
                self.mag_sum[m] += csum_add(mags[m].addr4, 4)
        c.mags = mags
        c.n_mags = n_mags
        c.mag_sum = self.mag_sum

        # Room for the longest layout (the longest NAI, widest padding) per message.
        self.longest = NAI_AT + min(longest_nai, MAX_NAI) + 7
        for k in range(c.tail_count):
            self.longest += (
                c.tail[k].x + 1 + c.tail[k].length + (8 if c.tail[k].field == F_LL else 0)
            )

    def __dealloc__(self):
        free(self.batch)
        free(self.templates)
        free(self.mag_sum)

    def encode(self, rows):
        """One PBU per selected row: (octets, offsets), as encode_pbus."""
        cdef cnp.ndarray rows_a = np.ascontiguousarray(rows, dtype=np.int64).reshape(-1)
        cdef Py_ssize_t n = len(rows_a)
        cdef cnp.ndarray offsets = np.zeros(n + 1, dtype=np.int64)
        if n == 0:
            return np.zeros(0, dtype=np.uint8), offsets
        cdef cnp.ndarray mns_a = c_array(self.pop.mns, MN_DTYPE)
        cdef cnp.ndarray out = np.empty(self.room(n), dtype=np.uint8)
        self.encode_rows(
            <const int64_t*>cnp.PyArray_DATA(rows_a), n, cnp.PyArray_DATA(mns_a), len(mns_a),
            <uint8_t*>cnp.PyArray_DATA(out), <int64_t*>cnp.PyArray_DATA(offsets),
        )
        out.resize(offsets[n], refcheck=False)  # shrinks in place (realloc)
        return out, offsets

    cdef Py_ssize_t room(self, Py_ssize_t n) noexcept nogil:
        """Octets ``encode_rows`` needs at ``out`` for ``n`` PBUs (and copy_template's overrun)."""
        return n * self.longest + COPY_BLOCK - MIN_PBU

    cdef int encode_rows(
        self, const int64_t* rows, Py_ssize_t n, const void* mns, Py_ssize_t n_mns, uint8_t* out,
        int64_t* offsets,
    ) except -1:
        """``encode`` of ``rows`` of the population's ``mns`` into ``out`` and ``offsets``."""
        cdef pbu_batch_t* c = <pbu_batch_t*>self.batch
        cdef int error
        c.rows, c.n, c.mns, c.n_mns = rows, n, <const mn_t*>mns, n_mns
        c.out, c.offsets = out, offsets
        offsets[0] = 0
        with nogil:
            error = encode_pbu_rows(c)
        row = rows[c.failed]
        if error == ERR_ROW:
            raise IndexError(f"index {row} is out of bounds for axis 0 with size {n_mns}")
        if error == ERR_MAG:
            mag, mags = self.pop.mns["mag"][row], len(self.pop.mags)
            raise IndexError(f"index {mag} is out of bounds for axis 0 with size {mags}")
        if error == ERR_NAI:
            length = 1 + len(self.pop.nai(row))
            raise ValueError(f"Mobile Node Identifier option data is {length} octets, over 255")
        return 0


def encode_pbus(
    pop,
    rows,
    lma,
    flags=cp.PBU_DEFAULT_FLAGS,
    lifetime=0,
    options=DEFAULT_PBU_OPTIONS,
    config=DEFAULT_CONFIG,
):
    """One PBU per selected row, from the row's MAG Proxy-CoA to ``lma``, checksum filled
    (``config`` gives the LMA Failure Indication's type code)."""
    rows_a = np.ascontiguousarray(rows, dtype=np.int64).reshape(-1)
    if len(rows_a) == 0:
        return np.zeros(0, dtype=np.uint8), np.zeros(1, dtype=np.int64)
    return PbuEncoder(pop, lma, flags, lifetime, options, config).encode(rows_a)


def encode_heartbeats(pop, mags, lmas, sequences):
    """Heartbeat requests from MAG ``mags[i]`` to the LMA whose address is ``lmas[i]`` (a row of
    a (n, 16) uint8 array) with sequence number ``sequences[i]``."""
    cdef const int64_t[::1] mags_v = np.ascontiguousarray(mags, dtype=np.int64).reshape(-1)
    lma_a = np.ascontiguousarray(lmas, dtype=np.uint8)
    seq_a = np.asarray(sequences).reshape(-1)
    cdef Py_ssize_t n = mags_v.shape[0]
    if len(lma_a) != n or len(seq_a) != n:
        raise ValueError("mags, lmas and sequences differ in length")
    cdef cnp.ndarray offsets_a = np.arange(0, 16 * (n + 1), 16, dtype=np.int64)
    cdef cnp.ndarray out = np.zeros(16 * n, dtype=np.uint8)
    if n == 0:
        return out, offsets_a
    if lma_a.shape[1:] != (16,):
        raise ValueError("lmas must be a (n, 16) array of IPv6 addresses")
    if int(seq_a.min()) < 0 or int(seq_a.max()) > 0xFFFFFFFF:
        raise struct.error("Heartbeat sequence numbers are 32-bit")
    cdef const uint8_t[:, ::1] lma_v = lma_a
    cdef const uint32_t[::1] seq_v = seq_a.astype(np.uint32)
    mags_a = c_array(pop.mags, MAG_DTYPE)
    cdef const mag_t* mag_table = <const mag_t*>cnp.PyArray_DATA(<cnp.ndarray>mags_a)
    cdef Py_ssize_t n_mags = len(mags_a)
    cdef uint8_t* p = <uint8_t*>cnp.PyArray_DATA(out)
    cdef Py_ssize_t i, mag = 0
    with nogil:
        for i in range(n):
            mag = wrap_index(mags_v[i], n_mags)
            if mag < 0:
                break
            write_heartbeat(p, seq_v[i], mag_table[mag].addr6, &lma_v[i, 0])
            p += HEARTBEAT_LENGTH
    if mag < 0:
        raise IndexError(f"index {mags_v[i]} is out of bounds for axis 0 with size {len(pop.mags)}")
    return out, offsets_a


# ---------------------------------------------------------------------------------------------
# Decoders: the validity rules of decode_datagram (ipv6.py, messages.py, options.py), as tables
# of message and option kinds per type number under the call's WireConfig.

include "mh_decode.pxi"


cdef struct batch_t:
    wire_t wire
    bint ipv6             # framing "ipv6", else "mh"
    const uint8_t* data
    Py_ssize_t size
    const int64_t* offsets


cdef object open_batch(batch_t* g, buf, offsets, framing, config, dtype):
    """Fill g for a batch (the checks of _decode_batch first); returns the zeroed records and
    the arrays g points into, which must outlive the decoding."""
    if framing not in ("ipv6", "mh"):
        raise ValueError("framing is 'ipv6' (inner IPv6 header, RFC 5844) or 'mh' (bare)")
    fill_wire(&g.wire, config)
    g.ipv6 = framing == "ipv6"
    data = np.ascontiguousarray(buf).reshape(-1).view(np.uint8)  # buf.tobytes()'s octets
    offs = np.ascontiguousarray(offsets, dtype=np.int64).reshape(-1)
    out = np.zeros(len(offs) - 1, dtype=dtype)
    g.data = <const uint8_t*>cnp.PyArray_DATA(<cnp.ndarray>data)
    g.size = len(data)
    g.offsets = <const int64_t*>cnp.PyArray_DATA(<cnp.ndarray>offs)
    return out, (data, offs)


cdef inline bint next_datagram(const batch_t* g, Py_ssize_t i, decoded_t* out) noexcept nogil:
    """Decode datagram i, sliced as data[offsets[i]:offsets[i + 1]] would be."""
    cdef Py_ssize_t start = clamp(g.offsets[i], g.size), end = clamp(g.offsets[i + 1], g.size)
    return decode_datagram(g.data + start, max(end - start, 0), g.ipv6, &g.wire, out)


cdef packed struct pba_t:
    uint8_t error
    int8_t checksum_ok
    uint8_t status
    uint8_t flags
    uint16_t seq
    uint16_t lifetime
    uint32_t mn_id
    uint8_t hnp[16]
    uint8_t hnp_len
    uint8_t has_ts
    uint64_t ts


cdef packed struct heartbeat_t:
    uint8_t error
    int8_t checksum_ok
    uint8_t flags
    uint32_t seq
    uint8_t has_restart_counter
    uint32_t restart_counter


cdef packed struct ss_ack_t:
    uint8_t error
    int8_t checksum_ok
    uint16_t identifier


cdef enum:
    DECODE_MALFORMED = 1
    DECODE_OTHER_MESSAGE = 2


cdef int check_layouts() except -1:
    """The packed structs must match the dtypes field for field; a typed memoryview checks."""
    cdef const mn_t[::1] mn = np.zeros(1, dtype=MN_DTYPE)
    cdef const mag_t[::1] mag = np.zeros(1, dtype=MAG_DTYPE)
    cdef const pba_t[::1] pba = np.zeros(1, dtype=PBA_DTYPE)
    cdef const heartbeat_t[::1] heartbeat = np.zeros(1, dtype=HEARTBEAT_DTYPE)
    cdef const ss_ack_t[::1] ss_ack = np.zeros(1, dtype=SS_ACK_DTYPE)
    return 0


check_layouts()


def nai_slots(blob, offsets):
    """NaiIndex.slots for the NAIs ``blob[offsets[k]:offsets[k + 1]]`` (py_nai_slots)."""
    cdef const uint8_t[::1] b = np.ascontiguousarray(blob, dtype=np.uint8)
    cdef const int64_t[::1] o = np.ascontiguousarray(offsets, dtype=np.int64)
    cdef Py_ssize_t n = o.shape[0] - 1, size = 2, k
    while size < 2 * n:
        size *= 2
    slots_a = np.full(size, -1, dtype=np.int64)
    cdef int64_t[::1] slots = slots_a
    cdef uint64_t mask = size - 1, i
    with nogil:
        for k in range(n):
            i = nai_hash(&b[0] + o[k] if o[k + 1] > o[k] else NULL, o[k + 1] - o[k]) & mask
            while slots[i] >= 0:
                i = (i + 1) & mask
            slots[i] = k
    return slots_a


def decode_pbas(buf, offsets, framing="ipv6", config=DEFAULT_CONFIG, nais=None):
    """PBA_DTYPE columns for a batch of received datagrams: ``framing`` "ipv6" for datagrams
    that start with the RFC 5844 inner IPv6 header, "mh" for bare Mobility Headers; ``nais``
    (a NaiIndex) gives the ``mn_id`` of a stored NAI, else an NAI is mn{digits}@..."""
    cdef batch_t g
    cdef decoded_t m
    cdef nai_index_t index
    cdef bint stored = nais is not None
    keep_nais = open_nai_index(&index, nais) if stored else None
    out, keep = open_batch(&g, buf, offsets, framing, config, PBA_DTYPE)
    cdef pba_t* rec = <pba_t*>cnp.PyArray_DATA(out)
    cdef Py_ssize_t i, body, count = len(out)
    with nogil:
        for i in range(count):
            rec[i].mn_id = NO_MN_ID
            if not next_datagram(&g, i, &m):
                rec[i].error = DECODE_MALFORMED
                continue
            rec[i].checksum_ok = m.checksum_ok
            if m.kind != M_BA:
                rec[i].error = DECODE_OTHER_MESSAGE
                continue
            rec[i].status = m.mh[6]
            rec[i].flags = m.mh[7]
            rec[i].seq = be16(m.mh + 8)
            rec[i].lifetime = be16(m.mh + 10)
            body = m.found.mnid
            if body >= 0 and m.mh[body] == MNID_SUBTYPE_NAI:
                if stored:
                    rec[i].mn_id = nai_lookup(&index, m.mh + body + 1, m.mh[body - 1] - 1)
                else:
                    rec[i].mn_id = nai_mn_id(m.mh + body + 1, m.mh[body - 1] - 1)
            if m.found.hnp >= 0:
                rec[i].hnp_len = m.mh[m.found.hnp + 1]
                memcpy(rec[i].hnp, m.mh + m.found.hnp + 2, 16)
            if m.found.ts >= 0:
                rec[i].has_ts = 1
                rec[i].ts = bswap64(load64(m.mh + m.found.ts))
    return out


def decode_heartbeats(buf, offsets, framing="ipv6", config=DEFAULT_CONFIG):
    """HEARTBEAT_DTYPE columns for a batch of received datagrams."""
    cdef batch_t g
    cdef decoded_t m
    out, keep = open_batch(&g, buf, offsets, framing, config, HEARTBEAT_DTYPE)
    cdef heartbeat_t* rec = <heartbeat_t*>cnp.PyArray_DATA(out)
    cdef Py_ssize_t i, count = len(out)
    with nogil:
        for i in range(count):
            if not next_datagram(&g, i, &m):
                rec[i].error = DECODE_MALFORMED
                continue
            rec[i].checksum_ok = m.checksum_ok
            if m.kind != M_HB:
                rec[i].error = DECODE_OTHER_MESSAGE
                continue
            rec[i].flags = m.mh[7]
            rec[i].seq = be32(m.mh + 8)
            if m.found.rc >= 0:
                rec[i].has_restart_counter = 1
                rec[i].restart_counter = be32(m.mh + m.found.rc)
    return out


def decode_ss_acks(buf, offsets, framing="ipv6", config=DEFAULT_CONFIG):
    """SS_ACK_DTYPE columns for a batch of received datagrams (SS-REQ/REP count as other)."""
    cdef batch_t g
    cdef decoded_t m
    out, keep = open_batch(&g, buf, offsets, framing, config, SS_ACK_DTYPE)
    cdef ss_ack_t* rec = <ss_ack_t*>cnp.PyArray_DATA(out)
    cdef Py_ssize_t i, count = len(out)
    with nogil:
        for i in range(count):
            if not next_datagram(&g, i, &m):
                rec[i].error = DECODE_MALFORMED
                continue
            rec[i].checksum_ok = m.checksum_ok
            if m.kind != M_SS or m.mh[6] != SS_ACK:
                rec[i].error = DECODE_OTHER_MESSAGE
                continue
            rec[i].identifier = be16(m.mh + 8)
    return out
