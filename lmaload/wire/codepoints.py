"""Code points: the IANA-assigned Mobility Header types and options, the names of status and
indicator values, and ``WireConfig``, the one place where every TBD code point of the drafts is
chosen (defaults from spec-digest §9.2)."""

from dataclasses import dataclass
from typing import Literal

PAYLOAD_PROTO_NONE = 59
IPPROTO_MH = 135
MH_MAX_LENGTH = 2048

# Mobility Header types assigned by IANA (spec-digest §9.1).
MH_BINDING_UPDATE = 5
MH_BINDING_ACK = 6
MH_BINDING_ERROR = 7
MH_HOME_AGENT_SWITCH = 12
MH_HEARTBEAT = 13

# Mobility options assigned by IANA (spec-digest §2).
OPT_PAD1 = 0
OPT_PADN = 1
OPT_ALTERNATE_COA = 3
OPT_MN_IDENTIFIER = 8
OPT_VENDOR_SPECIFIC = 19
OPT_HOME_NETWORK_PREFIX = 22
OPT_HANDOFF_INDICATOR = 23
OPT_ACCESS_TECHNOLOGY_TYPE = 24
OPT_MN_LINK_LAYER_ID = 25
OPT_LINK_LOCAL_ADDRESS = 26
OPT_TIMESTAMP = 27
OPT_RESTART_COUNTER = 28
OPT_IPV4_COA = 32
OPT_IPV4_HOA_REQUEST = 36
OPT_IPV4_HOA_REPLY = 37
OPT_IPV4_DEFAULT_ROUTER = 38
OPT_IPV4_DHCP_SUPPORT_MODE = 39

MNID_SUBTYPE_NAI = 1

# Binding Update flag word (spec-digest §1.3).
BU_FLAG_A = 0x8000
BU_FLAG_H = 0x4000
BU_FLAG_L = 0x2000
BU_FLAG_K = 0x1000
BU_FLAG_M = 0x0800
BU_FLAG_R = 0x0400
BU_FLAG_P = 0x0200
BU_FLAG_F = 0x0100
BU_FLAG_T = 0x0080
BU_FLAG_B = 0x0040
BU_FLAG_S = 0x0020
BU_FLAG_D = 0x0010
BU_FLAG_NAMES = {
    BU_FLAG_A: "A",
    BU_FLAG_H: "H",
    BU_FLAG_L: "L",
    BU_FLAG_K: "K",
    BU_FLAG_M: "M",
    BU_FLAG_R: "R",
    BU_FLAG_P: "P",
    BU_FLAG_F: "F",
    BU_FLAG_T: "T",
    BU_FLAG_B: "B",
    BU_FLAG_S: "S",
    BU_FLAG_D: "D",
}
PBU_DEFAULT_FLAGS = BU_FLAG_A | BU_FLAG_P

# Binding Acknowledgement flag octet.
BA_FLAG_K = 0x80
BA_FLAG_R = 0x40
BA_FLAG_P = 0x20
BA_FLAG_T = 0x10
BA_FLAG_B = 0x08
BA_FLAG_S = 0x04
BA_FLAG_D = 0x02
BA_FLAG_NAMES = {
    BA_FLAG_K: "K",
    BA_FLAG_R: "R",
    BA_FLAG_P: "P",
    BA_FLAG_T: "T",
    BA_FLAG_B: "B",
    BA_FLAG_S: "S",
    BA_FLAG_D: "D",
}

# Heartbeat flag octet (RFC 5847).
HB_FLAG_U = 0x02
HB_FLAG_R = 0x01
HB_FLAG_NAMES = {HB_FLAG_U: "U", HB_FLAG_R: "R"}

# Home Agent Switch reserved octet, HA-rel-04 "I" flag.
HAS_FLAG_I = 0x80
HAS_FLAG_NAMES = {HAS_FLAG_I: "I"}

# State Synchronization (HA-rel §5.1.1; M is our extension, R15).
SS_REQUEST = 0
SS_REPLY = 1
SS_ACK = 2
SS_TYPE_NAMES = {SS_REQUEST: "SS-REQ", SS_REPLY: "SS-REP", SS_ACK: "SS-ACK"}
SS_FLAG_A = 0x80
SS_FLAG_M = 0x40
SS_FLAG_NAMES = {SS_FLAG_A: "A", SS_FLAG_M: "M"}

# Home Agent Control (HA-rel §5.1.2).
HAC_SWITCHOVER_REQUEST = 0
HAC_SWITCHOVER_REPLY = 1
HAC_SWITCHBACK_REQUEST = 2
HAC_SWITCHBACK_REPLY = 3
HAC_SWITCH_COMPLETE = 4
HAC_TYPE_NAMES = {
    HAC_SWITCHOVER_REQUEST: "SO-REQ",
    HAC_SWITCHOVER_REPLY: "SO-REP",
    HAC_SWITCHBACK_REQUEST: "SB-REQ",
    HAC_SWITCHBACK_REPLY: "SB-REP",
    HAC_SWITCH_COMPLETE: "SW-COMP",
}
HAC_STATUS_NAMES = {
    0: "SUCCESS",
    128: "REASON_UNSPECIFIED",
    129: "ADMINISTRATIVELY_PROHIBITED",
    130: "NOT_ACTIVE_HA",
    131: "NOT_STANDBY_HA",
    132: "NOT_IN_SAME_REDUNDANT_HA_SET",
    133: "MAG_UNKNOWN",
}

# HA-HELLO flags (HA-rel §5.1.3).
HELLO_FLAG_A = 0x80
HELLO_FLAG_R = 0x40
HELLO_FLAG_NAMES = {HELLO_FLAG_A: "A", HELLO_FLAG_R: "R"}

# Handoff Indicator and Access Technology Type (RFC 5213 §8.4-8.5, spec-digest §3.3).
HI_ATTACH_NEW_INTERFACE = 1
HI_HANDOFF_BETWEEN_INTERFACES = 2
HI_HANDOFF_BETWEEN_MAGS = 3
HI_UNKNOWN = 4
HI_NOT_CHANGED = 5
HI_NAMES = {
    1: "Attachment over a new interface",
    2: "Handoff between two different interfaces of the mobile node",
    3: "Handoff between mobile access gateways for the same interface",
    4: "Handoff state unknown",
    5: "Handoff state not changed (re-registration)",
}
ATT_NAMES = {
    1: "Virtual",
    2: "PPP",
    3: "IEEE 802.3",
    4: "IEEE 802.11a/b/g",
    5: "IEEE 802.16e",
    6: "3GPP GERAN",
    7: "3GPP UTRAN",
    8: "3GPP E-UTRAN",
    9: "3GPP2 eHRPD",
    10: "3GPP2 HRPD",
    11: "3GPP2 1xRTT",
    12: "3GPP2 UMB",
    13: "3GPP NB-IoT",
}

# Binding Acknowledgement status codes (spec-digest §3.5).
STATUS_ACCEPTED = 0
STATUS_REASON_UNSPECIFIED = 128
STATUS_ADMINISTRATIVELY_PROHIBITED = 129
STATUS_INSUFFICIENT_RESOURCES = 130
STATUS_SEQUENCE_OUT_OF_WINDOW = 135
STATUS_PROXY_REG_NOT_ENABLED = 152
STATUS_NOT_LMA_FOR_THIS_MOBILE_NODE = 153
STATUS_MAG_NOT_AUTHORIZED_FOR_PROXY_REG = 154
STATUS_NOT_AUTHORIZED_FOR_HOME_NETWORK_PREFIX = 155
STATUS_TIMESTAMP_MISMATCH = 156
STATUS_TIMESTAMP_LOWER_THAN_PREV_ACCEPTED = 157
STATUS_MISSING_HOME_NETWORK_PREFIX_OPTION = 158
STATUS_BCE_PBU_PREFIX_SET_DO_NOT_MATCH = 159
STATUS_MISSING_MN_IDENTIFIER_OPTION = 160
STATUS_MISSING_HANDOFF_INDICATOR_OPTION = 161
STATUS_MISSING_ACCESS_TECH_TYPE_OPTION = 162
BA_STATUS_NAMES = {
    0: "BINDING_UPDATE_ACCEPTED",
    1: "ACCEPTED_PREFIX_DISCOVERY_NECESSARY",
    128: "REASON_UNSPECIFIED",
    129: "ADMINISTRATIVELY_PROHIBITED",
    130: "INSUFFICIENT_RESOURCES",
    131: "HOME_REGISTRATION_NOT_SUPPORTED",
    132: "NOT_HOME_SUBNET",
    133: "NOT_HOME_AGENT_FOR_THIS_MOBILE_NODE",
    134: "DUPLICATE_ADDRESS_DETECTION_FAILED",
    135: "SEQUENCE_NUMBER_OUT_OF_WINDOW",
    136: "EXPIRED_HOME_NONCE_INDEX",
    137: "EXPIRED_CARE_OF_NONCE_INDEX",
    138: "EXPIRED_NONCES",
    139: "REGISTRATION_TYPE_CHANGE_DISALLOWED",
    151: "SERVICE_AUTHORIZATION_FAILED",
    152: "PROXY_REG_NOT_ENABLED",
    153: "NOT_LMA_FOR_THIS_MOBILE_NODE",
    154: "MAG_NOT_AUTHORIZED_FOR_PROXY_REG",
    155: "NOT_AUTHORIZED_FOR_HOME_NETWORK_PREFIX",
    156: "TIMESTAMP_MISMATCH",
    157: "TIMESTAMP_LOWER_THAN_PREV_ACCEPTED",
    158: "MISSING_HOME_NETWORK_PREFIX_OPTION",
    159: "BCE_PBU_PREFIX_SET_DO_NOT_MATCH",
    160: "MISSING_MN_IDENTIFIER_OPTION",
    161: "MISSING_HANDOFF_INDICATOR_OPTION",
    162: "MISSING_ACCESS_TECH_TYPE_OPTION",
    170: "NOT_AUTHORIZED_FOR_IPV4_MOBILITY_SERVICE",
    171: "NOT_AUTHORIZED_FOR_IPV4_HOME_ADDRESS",
    172: "NOT_AUTHORIZED_FOR_IPV6_MOBILITY_SERVICE",
    173: "MULTIPLE_IPV4_HOME_ADDRESS_ASSIGNMENT_NOT_SUPPORTED",
}
BE_STATUS_UNKNOWN_BINDING_FOR_HOME_ADDRESS = 1
BE_STATUS_UNRECOGNIZED_MH_TYPE = 2
BE_STATUS_NAMES = {
    BE_STATUS_UNKNOWN_BINDING_FOR_HOME_ADDRESS: "UNKNOWN_BINDING_FOR_HOME_ADDRESS",
    BE_STATUS_UNRECOGNIZED_MH_TYPE: "UNRECOGNIZED_MH_TYPE",
}
IPV4_HOA_REPLY_STATUS_NAMES = {
    0: "SUCCESS",
    128: "FAILURE_REASON_UNSPECIFIED",
    129: "ADMINISTRATIVELY_PROHIBITED",
    130: "INCORRECT_IPV4_HOME_ADDRESS",
    131: "INVALID_IPV4_ADDRESS",
    132: "DYNAMIC_IPV4_HOME_ADDRESS_ASSIGNMENT_NOT_AVAILABLE",
}


FIXED_MH_TYPES = frozenset(
    {MH_BINDING_UPDATE, MH_BINDING_ACK, MH_BINDING_ERROR, MH_HOME_AGENT_SWITCH, MH_HEARTBEAT}
)
FIXED_OPTION_TYPES = frozenset(
    {
        OPT_PAD1,
        OPT_PADN,
        OPT_ALTERNATE_COA,
        OPT_MN_IDENTIFIER,
        OPT_VENDOR_SPECIFIC,
        OPT_HOME_NETWORK_PREFIX,
        OPT_HANDOFF_INDICATOR,
        OPT_ACCESS_TECHNOLOGY_TYPE,
        OPT_MN_LINK_LAYER_ID,
        OPT_LINK_LOCAL_ADDRESS,
        OPT_TIMESTAMP,
        OPT_RESTART_COUNTER,
        OPT_IPV4_COA,
        OPT_IPV4_HOA_REQUEST,
        OPT_IPV4_HOA_REPLY,
        OPT_IPV4_DEFAULT_ROUTER,
        OPT_IPV4_DHCP_SUPPORT_MODE,
    }
)


@dataclass(frozen=True)
class WireConfig:
    """Every code point the drafts left TBD, plus the one encoding choice they leave open.

    The defaults are spec-digest §9.2; both ends of a test must be configured alike.
    ``hac_mag_encoding`` selects how Home Agent Control carries the MAG address (R9): as the MAG
    Address option (canonical) or as the literal 16-octet field of the seed's Figure 6.
    """

    mh_state_sync: int = 200
    mh_ha_control: int = 201
    mh_ha_hello: int = 202
    mh_ha_rekey: int = 203
    opt_bci: int = 200
    opt_aaa: int = 201
    opt_pbci: int = 202
    opt_lfi: int = 203
    opt_mag_address: int = 204
    hac_mag_encoding: Literal["option", "literal"] = "option"

    def __post_init__(self) -> None:
        mh = (self.mh_state_sync, self.mh_ha_control, self.mh_ha_hello, self.mh_ha_rekey)
        opts = (self.opt_bci, self.opt_aaa, self.opt_pbci, self.opt_lfi, self.opt_mag_address)
        if len(set(mh)) != len(mh) or len(set(opts)) != len(opts):
            raise ValueError("TBD code points must be distinct")
        if any(not 0 <= v <= 255 for v in mh + opts):
            raise ValueError("code points are octets (0..255)")
        if set(mh) & FIXED_MH_TYPES or set(opts) & FIXED_OPTION_TYPES:
            raise ValueError("TBD code points must not reuse an IANA-assigned type lmaload decodes")
        if self.hac_mag_encoding not in ("option", "literal"):
            raise ValueError("hac_mag_encoding must be 'option' or 'literal'")


DEFAULT_CONFIG = WireConfig()
