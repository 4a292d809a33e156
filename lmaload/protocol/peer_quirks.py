"""What real LMAs send that RFC 5213 would not have them send (captures of OPMIP and OAI in
``../shared/peers``): the kinds ``MagCounters.quirks`` counts them by, and why a PBA the decoder
refused is malformed. The MAG side counts every such reply and never lets one break a session's
accounting: a malformed PBA is dropped (the PBU is retransmitted as if it were lost)."""

from __future__ import annotations

from lmaload.wire import codepoints as cp

PBA_FIXED_LENGTH = 12  # Next Header .. Lifetime (RFC 6275 §6.1.8)

SEQUENCE_RESYNC = "sequence_resync"  # PBA 135: the MAG continues from the PBA's sequence number
HNP_ALL_ZERO = "hnp_all_zero"  # PBA 0 echoing the ALL_ZERO request instead of a prefix (OPMIP)
HNP_DIFFERS = "hnp_differs"  # PBA 0 with a prefix other than the one the PBU requested
NO_HEARTBEATS = "heartbeats_unsupported"  # Binding Error status 2 from an LMA we heartbeat


def malformed(reason: str) -> str:
    """The quirk kind of a PBA dropped as malformed for ``reason``."""
    return f"malformed_{reason}"


def binding_error(status: int) -> str:
    """The quirk kind of a Binding Error of ``status`` (2: unrecognised MH type)."""
    return f"binding_error_{status}"


def malformed_reason(mh: bytes) -> str:
    """Why a Binding Ack the decoder refused is malformed, the first problem found: the Header
    Len disagrees with the datagram's length (``header_length``), it is shorter than a Binding
    Ack (``truncated``), an option runs past the end (``option_overrun``), the P flag is not set
    (``p_flag_unset``: a Binding Ack, not a PBA), or an option is inconsistent in itself
    (``invalid_option``)."""
    if len(mh) < 8 or (mh[1] + 1) * 8 != len(mh):
        return "header_length"
    if len(mh) < PBA_FIXED_LENGTH:
        return "truncated"
    at = PBA_FIXED_LENGTH
    while at < len(mh):
        if mh[at] == cp.OPT_PAD1:
            at += 1
            continue
        if at + 2 > len(mh) or at + 2 + mh[at + 1] > len(mh):
            return "option_overrun"
        at += 2 + mh[at + 1]
    if not mh[7] & cp.BA_FLAG_P:
        return "p_flag_unset"
    return "invalid_option"
