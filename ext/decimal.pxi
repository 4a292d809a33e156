# Decimal digits of a derived NAI mn{mn_id}@realm for the PBU encoder, with their checksum sum.
# Include with: include "decimal.pxi"
from libc.stdint cimport uint16_t, uint32_t, uint64_t
from libc.string cimport memcpy


# "00".."99": two decimal digits per table lookup; DIGIT_SUM[k] is the pair as a big-endian word.
cdef char DIGITS[200]
cdef uint16_t DIGIT_SUM[100]
for _k in range(100):
    DIGITS[2 * _k] = 48 + _k // 10
    DIGITS[2 * _k + 1] = 48 + _k % 10
    DIGIT_SUM[_k] = ((48 + _k // 10) << 8) | (48 + _k % 10)


cdef inline int decimal_length(uint32_t v) noexcept nogil:
    return (1 + (v >= 10) + (v >= 100) + (v >= 1000) + (v >= 10000) + (v >= 100000)
            + (v >= 1000000) + (v >= 10000000) + (v >= 100000000) + (v >= 1000000000))


cdef inline uint64_t write_decimal(uint8_t* end, uint32_t v) noexcept nogil:
    """Write v's decimal digits so that they end just before ``end``; return their big-endian
    word sum modulo 0xFFFF, counted from the last digit (the pairs from the end are whole words,
    and a lone leading digit is the low octet of one)."""
    cdef uint64_t s = 0
    cdef uint32_t r
    while v >= 100:
        r = v % 100
        v //= 100
        end -= 2
        memcpy(end, &DIGITS[2 * r], 2)
        s += DIGIT_SUM[r]
    if v >= 10:
        memcpy(end - 2, &DIGITS[2 * v], 2)
        return s + DIGIT_SUM[v]
    end -= 1
    end[0] = 48 + v
    return s + 48 + v
