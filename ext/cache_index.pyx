"""The binding cache's indexes (``lmaload.protocol.binding_cache``) in C memory: its rows by MN
identifier, by home network prefix and by MAG, and the stack of its free rows.

Dicts and sets of row numbers cost, for every new session, a hash of a new bytes object, probes
into cold memory and an int object per entry, and a dict's resize copies all of its entries at
once (30 ms at 700 000, in the middle of the latencies a run measures). These tables hold no
Python object per entry. They are open addressing with linear probing and backward-shift
deletion, and they grow without a stall:

- MN identifier → the MN's first row; its other rows (multihoming) follow through ``mn_next``.
  A slot keeps 32 bits of the identifier's hash; a match is confirmed against ``mn_ids[row]``,
  the cache's list of identifiers, which the caller fills before it indexes a row.
- prefix key (``binding_cache.prefix_key``: 16 octets, then the length) → row; the key inline.
  Like the dict it replaces, entering a key again points it at the new row, and removing a row
  removes its keys whichever row they point at.
- MAG address (16 octets) → its first row and how many it has; its rows are a doubly-linked list
  through ``mag_next`` / ``mag_prev``, so moving or deleting a row searches nothing. A MAG once
  seen keeps its slot (there are few; that table grows at once).

Growing the MN and prefix tables: past half full, a table twice the size is mapped (zeroed
pages the kernel hands out as they are first written) and every insert writes the next
``PREFAULT_STEP`` slots' worth of its pages, so that they are all mapped by the time the table
is two thirds full. Then the old one's slots move to it ``MOVE_STEP`` at a time with every later
insert, which ends the move long before the new table fills. Meanwhile a key is looked for in
the new table, then in the old one, and a key found there moves at once; a slot that moved is
marked -1 so that the probes of the old table still run past it. An insert never goes to the
old table, so each key is in one table only. (Copying a table at once stalled the LMA 15 ms at
350 000 entries, 55 ms at 1.4 M. Mapping it at once, as the moves' random writes did, stalled it
80 ms at 350 000 on a virtual machine whose host takes back the guest's free memory: there the
first write of each 4 KiB page costs 5-10 µs.)

It also counts the rows in each state, kept by every writer of a row's state (``restate``), so
that the metrics' per-state counts do not read every row (135 MB at 1.5 M entries, four times a
second).
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.list cimport PyList_GET_ITEM
from libc.stdint cimport INT32_MAX, int32_t, uint8_t, uint32_t
from libc.stdlib cimport free, realloc
from libc.string cimport memcmp, memcpy, memset
from posix.mman cimport (
    MADV_HUGEPAGE, MAP_ANONYMOUS, MAP_FAILED, MAP_PRIVATE, PROT_READ, PROT_WRITE, madvise, mmap, munmap,
)

include "hashing.pxi"
include "pages.pxi"

cdef Py_ssize_t FIRST_SLOTS = 1024
cdef Py_ssize_t FIRST_MAG_SLOTS = 64
# Old slots moved per insert while a table grows: the move of S slots ends within S/32 inserts,
# well before the new table (2S slots, a third full) reaches two thirds; until then a key not in
# the new table is looked for in the old one too.
cdef Py_ssize_t MOVE_STEP = 32
# Slots' worth of a spare table's pages written per insert from half full on: the spare (twice
# the slots) needs 12 per insert to be mapped by two thirds full.
cdef size_t PREFAULT_STEP = 16


cdef void* _zeroed(Py_ssize_t n, size_t size) except NULL:
    """``n`` empty slots of ``size`` octets: zeroed pages, mapped as they are first written."""
    cdef void* p = mmap(NULL, n * size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
    if p == MAP_FAILED:
        raise MemoryError()
    if n * size >= (2 << 20):
        madvise(p, n * size, MADV_HUGEPAGE)
    return p


cdef inline void _unmap(void* p, Py_ssize_t n, size_t size) noexcept nogil:
    if p != NULL:
        munmap(p, n * size)


cdef int _prepare(spare_t* spare, size_t size, size_t step) except -1:
    """Map the spare table of ``size`` octets if it is not yet, and write the pages of its next
    ``step`` octets."""
    if spare.p == NULL:
        spare.p = <char*>_zeroed(size, 1)
        spare.size, spare.due, spare.touched = size, 0, 0
    spare.due = min(spare.due + step, spare.size)
    if spare.touched < spare.due:
        write_pages(spare.p + spare.touched, spare.due - spare.touched)
        spare.touched += (spare.due - spare.touched + PAGE - 1) // PAGE * PAGE
    return 0


cdef bint _full(
    spare_t* spare, Py_ssize_t count, Py_ssize_t size, bint moving, size_t slot
) except -1:
    """Whether a table of ``size`` slots of ``slot`` octets holding ``count`` keys must grow to
    take one more. From half full on (while no earlier growth is still moving), the spare's next
    pages are written first."""
    if not moving and (count + 1) * 2 > size:
        _prepare(spare, 2 * size * slot, PREFAULT_STEP * slot)
    return (count + 1) * 3 > size * 2


cdef void* _spare_or_zeroed(spare_t* spare, Py_ssize_t n, size_t size) except NULL:
    """The spare table (``n`` slots of ``size`` octets; mapped at once if there is none)."""
    cdef void* p = spare.p
    if p == NULL:
        return _zeroed(n, size)
    spare.p = NULL
    return p


cdef void* _reserved(
    void* table, Py_ssize_t n, spare_t* spare, Py_ssize_t slots, size_t size
) except NULL:
    """A table of ``slots`` empty slots of ``size`` octets, every page written, in place of
    ``table`` (``n`` slots) and of the spare prepared for its growth."""
    _unmap(table, n, size)
    _unmap(spare.p, spare.size, 1)
    spare.p = NULL
    cdef void* p = _zeroed(slots, size)
    write_pages(<char*>p, slots * size)
    return p


cdef int32_t* _resized(int32_t* p, Py_ssize_t n) except NULL:
    cdef int32_t* q = <int32_t*>realloc(p, n * sizeof(int32_t))
    if q == NULL:
        raise MemoryError()
    return q


cdef inline uint32_t _mn_tag(const uint8_t* mn, Py_ssize_t n) noexcept nogil:
    return <uint32_t>octets_hash(mn, n)


cdef inline Py_ssize_t _prefix_home(const uint8_t* key, Py_ssize_t mask) noexcept nogil:
    return octets_hash(key, 17) & mask


cdef inline bint _between(Py_ssize_t a, Py_ssize_t k, Py_ssize_t b) noexcept nogil:
    """Whether ``k`` lies in the cyclic interval (a, b]."""
    if a <= b:
        return a < k <= b
    return k > a or k <= b


cdef inline int _address(bytes mag) except -1:
    if len(mag) != 16:
        raise ValueError("a MAG address is 16 octets")
    return 0


cdef class CacheIndex:
    """Rows by MN identifier, prefix key and MAG, and the free rows, of a binding cache whose MN
    identifiers are the list ``mn_ids`` (grown in place by the cache)."""

    def __cinit__(self, list mn_ids not None):
        self.mn_ids = mn_ids
        memset(self.in_state, 0, sizeof(self.in_state))
        self.mn_slots = <mn_slot_t*>_zeroed(FIRST_SLOTS, sizeof(mn_slot_t))
        self.prefix_slots = <prefix_slot_t*>_zeroed(FIRST_SLOTS, sizeof(prefix_slot_t))
        self.mag_slots = <mag_slot_t*>_zeroed(FIRST_MAG_SLOTS, sizeof(mag_slot_t))
        self.mn_mask = self.prefix_mask = FIRST_SLOTS - 1
        self.mag_mask = FIRST_MAG_SLOTS - 1

    def __dealloc__(self):
        _unmap(self.mn_slots, self.mn_mask + 1, sizeof(mn_slot_t))
        if self.mn_old != NULL:
            _unmap(self.mn_old, self.mn_old_mask + 1, sizeof(mn_slot_t))
        _unmap(self.prefix_slots, self.prefix_mask + 1, sizeof(prefix_slot_t))
        if self.prefix_old != NULL:
            _unmap(self.prefix_old, self.prefix_old_mask + 1, sizeof(prefix_slot_t))
        _unmap(self.mag_slots, self.mag_mask + 1, sizeof(mag_slot_t))
        _unmap(self.mn_spare.p, self.mn_spare.size, 1)
        _unmap(self.prefix_spare.p, self.prefix_spare.size, 1)
        free(self.mn_next)
        free(self.mag_next)
        free(self.mag_prev)
        free(self.free_rows)

    # --- rows ----------------------------------------------------------------------------------

    def grow(self, Py_ssize_t rows):
        """Extend to ``rows`` rows; the new ones are free and taken lowest first."""
        if rows >= INT32_MAX:
            raise OverflowError("a binding cache holds fewer than 2**31 - 1 rows")
        if rows <= self.rows:
            return
        self.mn_next = _resized(self.mn_next, rows)
        self.mag_next = _resized(self.mag_next, rows)
        self.mag_prev = _resized(self.mag_prev, rows)
        self.free_rows = _resized(self.free_rows, rows)
        cdef Py_ssize_t row
        for row in range(rows - 1, self.rows - 1, -1):
            self.free_rows[self.free_count] = <int32_t>row
            self.free_count += 1
        self.in_state[0] += rows - self.rows  # FREE
        self.rows = rows

    def reserve(self, Py_ssize_t rows):
        """Make room for ``rows`` rows and their keys before any is indexed, and write every
        page of that room now: no insert up to then grows a table or maps a page (on a virtual
        machine whose host takes back the guest's free memory, the first write of a page costs
        5-10 µs, 0.6 µs per session in the middle of a load)."""
        if self.mn_count or self.prefix_count:
            raise ValueError("reserve before indexing any row")
        self.grow(rows)
        cdef Py_ssize_t slots = FIRST_SLOTS
        while slots < 2 * rows:  # at most half full: no spare is prepared
            slots *= 2
        if slots > self.mn_mask + 1:
            self.mn_slots = <mn_slot_t*>_reserved(
                self.mn_slots, self.mn_mask + 1, &self.mn_spare, slots, sizeof(mn_slot_t)
            )
            self.mn_mask = slots - 1
        if slots > self.prefix_mask + 1:
            self.prefix_slots = <prefix_slot_t*>_reserved(
                self.prefix_slots, self.prefix_mask + 1, &self.prefix_spare, slots,
                sizeof(prefix_slot_t),
            )
            self.prefix_mask = slots - 1
        memset(self.mn_next, 0, self.rows * sizeof(int32_t))
        memset(self.mag_next, 0, self.rows * sizeof(int32_t))
        memset(self.mag_prev, 0, self.rows * sizeof(int32_t))

    def restate(self, int old, int new):
        """Count a row that goes from state ``old`` to ``new``."""
        self.in_state[<uint8_t>old] -= 1
        self.in_state[<uint8_t>new] += 1

    def state_count(self, int state):
        """Rows in ``state``."""
        return self.in_state[<uint8_t>state]

    cdef Py_ssize_t take_row(self) noexcept nogil:
        """A free row, the one freed last; -1 when there is none."""
        if self.free_count == 0:
            return -1
        self.free_count -= 1
        return self.free_rows[self.free_count]

    def take(self):
        """A free row, the one freed last; -1 when there is none (``grow`` first)."""
        return self.take_row()

    def release(self, Py_ssize_t row):
        """Return ``row``, no longer indexed, to the free rows."""
        self._check(row)
        if self.free_count >= self.rows:
            raise ValueError("more rows released than taken")
        self.free_rows[self.free_count] = <int32_t>row
        self.free_count += 1

    cdef int _check(self, Py_ssize_t row) except -1:
        if not 0 <= row < self.rows:
            raise IndexError(f"row {row} is not in a cache of {self.rows} rows")
        return 0

    # --- lookups -------------------------------------------------------------------------------

    cdef Py_ssize_t _mn_find_in(
        self, mn_slot_t* slots, Py_ssize_t mask, const uint8_t* mn, Py_ssize_t n, uint32_t tag,
        Py_ssize_t* empty,
    ) except -2:
        """The slot of ``slots`` holding MN identifier ``mn`` (``n`` octets, hash tag ``tag``),
        or -1 with the empty slot that ends its probe in ``empty``."""
        cdef Py_ssize_t at = tag & mask
        cdef mn_slot_t* s
        cdef bytes held
        while True:
            s = slots + at
            if s.head == 0:
                empty[0] = at
                return -1
            if s.head > 0 and s.tag == tag:
                held = <bytes>PyList_GET_ITEM(self.mn_ids, s.head - 1)
                if PyBytes_GET_SIZE(held) == n and memcmp(PyBytes_AS_STRING(held), mn, n) == 0:
                    return at
            at = (at + 1) & mask

    cdef Py_ssize_t _mn_locate(self, const uint8_t* mn, Py_ssize_t n, uint32_t tag) except -1:
        """The slot of the table holding ``mn``, moved there from the old one if it was there;
        or the empty slot where it would go."""
        cdef Py_ssize_t empty = -1, unused, at
        at = self._mn_find_in(self.mn_slots, self.mn_mask, mn, n, tag, &empty)
        if at >= 0:
            return at
        if self.mn_old != NULL:
            at = self._mn_find_in(self.mn_old, self.mn_old_mask, mn, n, tag, &unused)
            if at >= 0:
                self.mn_slots[empty] = self.mn_old[at]
                self.mn_old[at].head = -1
        return empty

    cdef Py_ssize_t find_mn(self, const uint8_t* mn, Py_ssize_t n) except -2:
        """The first row of MN identifier ``mn`` (``n`` octets), -1 for none; the others follow
        through ``next_of_mn``."""
        return self.mn_slots[self._mn_locate(mn, n, _mn_tag(mn, n))].head - 1

    cdef Py_ssize_t next_of_mn(self, Py_ssize_t row) noexcept nogil:
        return self.mn_next[row]

    cdef Py_ssize_t _prefix_locate(self, const uint8_t* key) noexcept nogil:
        """As ``_mn_locate``, for the 17-octet prefix key ``key``."""
        cdef Py_ssize_t at = _prefix_home(key, self.prefix_mask), old
        cdef prefix_slot_t* s
        while True:
            s = self.prefix_slots + at
            if s.row == 0:
                break
            if memcmp(s.key, key, 17) == 0:
                return at
            at = (at + 1) & self.prefix_mask
        if self.prefix_old != NULL:
            old = _prefix_home(key, self.prefix_old_mask)
            while self.prefix_old[old].row != 0:
                if self.prefix_old[old].row > 0 and memcmp(self.prefix_old[old].key, key, 17) == 0:
                    s[0] = self.prefix_old[old]
                    self.prefix_old[old].row = -1
                    break
                old = (old + 1) & self.prefix_old_mask
        return at

    cdef Py_ssize_t find_prefix(self, const uint8_t* key) noexcept nogil:
        """The row of the 17-octet prefix key ``key``, -1 for none."""
        return self.prefix_slots[self._prefix_locate(key)].row - 1

    cdef Py_ssize_t _mag_probe(self, const uint8_t* mag) noexcept nogil:
        cdef Py_ssize_t at = address_hash(mag) & self.mag_mask
        cdef mag_slot_t* s
        while True:
            s = self.mag_slots + at
            if not s.used or memcmp(s.mag, mag, 16) == 0:
                return at
            at = (at + 1) & self.mag_mask

    def mn_rows(self, bytes mn not None) -> list:
        """The rows of MN identifier ``mn``."""
        rows = []
        cdef Py_ssize_t row = self.find_mn(<const uint8_t*>PyBytes_AS_STRING(mn), len(mn))
        while row >= 0:
            rows.append(row)
            row = self.mn_next[row]
        return rows

    def prefix_row(self, bytes key not None):
        """The row of prefix key ``key``, or None."""
        if len(key) != 17:
            return None
        cdef Py_ssize_t row = self.find_prefix(<const uint8_t*>PyBytes_AS_STRING(key))
        return None if row < 0 else row

    def mag_rows(self, bytes mag not None) -> list:
        """The rows at the MAG of packed address ``mag``."""
        _address(mag)
        rows = []
        cdef mag_slot_t* s = self.mag_slots + self._mag_probe(<const uint8_t*>PyBytes_AS_STRING(mag))
        cdef Py_ssize_t row = s.head - 1 if s.used else -1
        while row >= 0:
            rows.append(row)
            row = self.mag_next[row]
        return rows

    def mags_with(self, const uint8_t[:] state not None, int wanted) -> list:
        """The packed addresses of the MAGs with a row whose ``state`` (the cache's state
        column) is ``wanted``. Each MAG's rows are read until one is: most often its first."""
        mags = []
        cdef Py_ssize_t i, row
        cdef mag_slot_t* s
        for i in range(self.mag_mask + 1):
            s = self.mag_slots + i
            row = s.head - 1 if s.used else -1
            while row >= 0:
                if row < state.shape[0] and state[row] == wanted:
                    mags.append(PyBytes_FromStringAndSize(<const char*>s.mag, 16))
                    break
                row = self.mag_next[row]
        return mags

    # --- indexing ------------------------------------------------------------------------------

    cdef int add(self, Py_ssize_t row, bytes mn, const uint8_t* key, const uint8_t* mag) except -1:
        """Index ``row``: MN identifier ``mn`` (already ``mn_ids[row]``), the one prefix key
        ``key`` (17 octets), at the MAG of packed address ``mag``."""
        self._add_mn(row, mn)
        self._add_prefix(row, key)
        self._add_mag(row, mag)
        return 0

    def insert(self, Py_ssize_t row, bytes mn not None, tuple keys not None, bytes mag not None):
        """Index ``row``: MN identifier ``mn`` (already ``mn_ids[row]``), prefix keys ``keys``, at
        the MAG of packed address ``mag``."""
        self._check(row)
        _address(mag)
        for key in keys:
            if len(key) != 17:
                raise ValueError("a prefix key is 17 octets")
        self._add_mn(row, mn)
        for key in keys:
            self._add_prefix(row, <const uint8_t*>PyBytes_AS_STRING(key))
        self._add_mag(row, <const uint8_t*>PyBytes_AS_STRING(mag))

    def remove(self, Py_ssize_t row, bytes mn not None, tuple keys not None, bytes mag not None):
        """Unindex ``row``, indexed under ``mn``, ``keys`` and ``mag``."""
        self._check(row)
        _address(mag)
        self._remove_mn(row, mn)
        cdef Py_ssize_t at
        for key in keys:
            if len(key) == 17:
                at = self._prefix_locate(<const uint8_t*>PyBytes_AS_STRING(key))
                if self.prefix_slots[at].row > 0:
                    self._delete_prefix_slot(at)
        self._remove_mag(row, <const uint8_t*>PyBytes_AS_STRING(mag))

    def move(self, Py_ssize_t row, bytes old not None, bytes new not None):
        """Index ``row`` under the MAG of packed address ``new`` instead of ``old``."""
        self._check(row)
        _address(old)
        _address(new)
        self._remove_mag(row, <const uint8_t*>PyBytes_AS_STRING(old))
        self._add_mag(row, <const uint8_t*>PyBytes_AS_STRING(new))

    cdef int _add_mn(self, Py_ssize_t row, bytes mn) except -1:
        self._mn_room()
        cdef Py_ssize_t n = PyBytes_GET_SIZE(mn)
        cdef const uint8_t* p = <const uint8_t*>PyBytes_AS_STRING(mn)
        cdef uint32_t tag = _mn_tag(p, n)
        cdef mn_slot_t* s = self.mn_slots + self._mn_locate(p, n, tag)
        if s.head == 0:
            s.tag = tag
            self.mn_next[row] = -1
            self.mn_count += 1
        else:
            self.mn_next[row] = s.head - 1
        s.head = <int32_t>row + 1
        return 0

    cdef int _remove_mn(self, Py_ssize_t row, bytes mn) except -1:
        cdef Py_ssize_t n = PyBytes_GET_SIZE(mn)
        cdef const uint8_t* p = <const uint8_t*>PyBytes_AS_STRING(mn)
        cdef Py_ssize_t at = self._mn_locate(p, n, _mn_tag(p, n))
        cdef mn_slot_t* s = self.mn_slots + at
        cdef Py_ssize_t before
        if s.head - 1 == row:
            if self.mn_next[row] < 0:
                self._delete_mn_slot(at)
            else:
                s.head = self.mn_next[row] + 1
            return 0
        before = s.head - 1
        while before >= 0 and self.mn_next[before] != row:
            before = self.mn_next[before]
        if before < 0:
            raise KeyError(f"row {row} is not indexed under its MN identifier")
        self.mn_next[before] = self.mn_next[row]
        return 0

    cdef int _add_prefix(self, Py_ssize_t row, const uint8_t* key) except -1:
        self._prefix_room()
        cdef prefix_slot_t* s = self.prefix_slots + self._prefix_locate(key)
        if s.row == 0:
            memcpy(s.key, key, 17)
            self.prefix_count += 1
        s.row = <int32_t>row + 1
        return 0

    cdef int _add_mag(self, Py_ssize_t row, const uint8_t* mag) except -1:
        if (self.mag_count + 1) * 2 > self.mag_mask + 1:
            self._grow_mags()
        cdef mag_slot_t* s = self.mag_slots + self._mag_probe(mag)
        if not s.used:
            memcpy(s.mag, mag, 16)
            s.used = 1
            self.mag_count += 1
        self.mag_prev[row] = -1
        self.mag_next[row] = s.head - 1
        if s.head > 0:
            self.mag_prev[s.head - 1] = <int32_t>row
        s.head = <int32_t>row + 1
        s.count += 1
        return 0

    cdef int _remove_mag(self, Py_ssize_t row, const uint8_t* mag) except -1:
        cdef mag_slot_t* s = self.mag_slots + self._mag_probe(mag)
        cdef int32_t before = self.mag_prev[row], after = self.mag_next[row]
        if not s.used or s.count <= 0 or (before < 0 and s.head - 1 != row):
            raise KeyError(f"row {row} is not indexed under its MAG")
        if before >= 0:
            self.mag_next[before] = after
        else:
            s.head = after + 1
        if after >= 0:
            self.mag_prev[after] = before
        s.count -= 1
        return 0

    # --- deletion and growth -------------------------------------------------------------------

    cdef void _delete_mn_slot(self, Py_ssize_t hole) noexcept nogil:
        """Empty slot ``hole``, shifting back the slots after it that would not be found past
        the hole."""
        cdef Py_ssize_t at = hole, home
        cdef mn_slot_t* slots = self.mn_slots
        while True:
            at = (at + 1) & self.mn_mask
            if slots[at].head == 0:
                break
            home = slots[at].tag & self.mn_mask
            if not _between(hole, home, at):
                slots[hole] = slots[at]
                hole = at
        slots[hole].head = 0
        self.mn_count -= 1

    cdef void _delete_prefix_slot(self, Py_ssize_t hole) noexcept nogil:
        cdef Py_ssize_t at = hole, home
        cdef prefix_slot_t* slots = self.prefix_slots
        while True:
            at = (at + 1) & self.prefix_mask
            if slots[at].row == 0:
                break
            home = _prefix_home(slots[at].key, self.prefix_mask)
            if not _between(hole, home, at):
                slots[hole] = slots[at]
                hole = at
        slots[hole].row = 0
        self.prefix_count -= 1

    cdef int _mn_room(self) except -1:
        """Room for one more MN identifier: the grown table's next old slots moved, or a grown
        table begun."""
        cdef Py_ssize_t size = self.mn_mask + 1
        if self.mn_old != NULL:
            self._mn_move_on(MOVE_STEP)
        if not _full(&self.mn_spare, self.mn_count, size, self.mn_old != NULL, sizeof(mn_slot_t)):
            return 0
        if self.mn_old != NULL:
            self._mn_move_on(self.mn_old_mask + 1)
        self.mn_old, self.mn_old_mask, self.mn_cursor = self.mn_slots, self.mn_mask, 0
        self.mn_slots = <mn_slot_t*>_spare_or_zeroed(&self.mn_spare, 2 * size, sizeof(mn_slot_t))
        self.mn_mask = 2 * size - 1
        self._mn_move_on(MOVE_STEP)
        return 0

    cdef void _mn_move_on(self, Py_ssize_t slots) noexcept nogil:
        """Move the old table's next ``slots`` slots to the grown one; unmap it when done."""
        cdef Py_ssize_t size = self.mn_old_mask + 1
        cdef Py_ssize_t end = min(self.mn_cursor + slots, size), i, at
        cdef mn_slot_t* old = self.mn_old
        for i in range(self.mn_cursor, end):
            if old[i].head > 0:
                at = old[i].tag & self.mn_mask
                while self.mn_slots[at].head != 0:
                    at = (at + 1) & self.mn_mask
                self.mn_slots[at] = old[i]
                old[i].head = -1
        self.mn_cursor = end
        if end == size:
            _unmap(old, size, sizeof(mn_slot_t))
            self.mn_old = NULL

    cdef int _prefix_room(self) except -1:
        cdef Py_ssize_t size = self.prefix_mask + 1
        if self.prefix_old != NULL:
            self._prefix_move_on(MOVE_STEP)
        if not _full(
            &self.prefix_spare, self.prefix_count, size, self.prefix_old != NULL,
            sizeof(prefix_slot_t),
        ):
            return 0
        if self.prefix_old != NULL:
            self._prefix_move_on(self.prefix_old_mask + 1)
        self.prefix_old, self.prefix_old_mask = self.prefix_slots, self.prefix_mask
        self.prefix_cursor = 0
        self.prefix_slots = <prefix_slot_t*>_spare_or_zeroed(
            &self.prefix_spare, 2 * size, sizeof(prefix_slot_t)
        )
        self.prefix_mask = 2 * size - 1
        self._prefix_move_on(MOVE_STEP)
        return 0

    cdef void _prefix_move_on(self, Py_ssize_t slots) noexcept nogil:
        cdef Py_ssize_t size = self.prefix_old_mask + 1
        cdef Py_ssize_t end = min(self.prefix_cursor + slots, size), i, at
        cdef prefix_slot_t* old = self.prefix_old
        for i in range(self.prefix_cursor, end):
            if old[i].row > 0:
                at = _prefix_home(old[i].key, self.prefix_mask)
                while self.prefix_slots[at].row != 0:
                    at = (at + 1) & self.prefix_mask
                self.prefix_slots[at] = old[i]
                old[i].row = -1
        self.prefix_cursor = end
        if end == size:
            _unmap(old, size, sizeof(prefix_slot_t))
            self.prefix_old = NULL

    cdef int _grow_mags(self) except -1:
        cdef Py_ssize_t size = self.mag_mask + 1, mask = 2 * size - 1, i, at
        cdef mag_slot_t* old = self.mag_slots
        cdef mag_slot_t* slots = <mag_slot_t*>_zeroed(2 * size, sizeof(mag_slot_t))
        for i in range(size):
            if old[i].used:
                at = address_hash(old[i].mag) & mask
                while slots[at].used:
                    at = (at + 1) & mask
                slots[at] = old[i]
        self.mag_slots, self.mag_mask = slots, mask
        _unmap(old, size, sizeof(mag_slot_t))
        return 0
