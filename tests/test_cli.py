"""The command line: `lmaload decode` (hex and capture input, text and JSON output, its exit
codes) and a help text on every option of every command."""

import json
import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

from lmaload.cli import main
from lmaload.pcap import ethernet_frame, ipv4_packet, udp_datagram, write_pcap
from tests.vectors import VECTORS, VECTORS_PCAP, vector_named

V1 = vector_named("V1")
ADDRS = ["--src", V1["src"], "--dst", V1["dst"]]


def run(*args: str, input: str | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["decode", *args], input=input)
    return result.exit_code, result.stdout, result.stderr


def test_decode_hex_json_fields() -> None:
    code, out, _ = run("--json", *ADDRS, V1["hex"])
    assert code == 0
    d = json.loads(out)
    assert d["mh_type"] == 5 and d["name"] == "Proxy Binding Update"
    assert (d["length"], d["checksum"], d["checksum_ok"]) == (72, 0x4C79, True)
    assert (d["sequence"], d["flags"], d["lifetime"]) == (1, 0x8200, 900)
    assert d["flag_names"] == ["A", "P"] and d["lifetime_seconds"] == 3600
    options = {o["name"]: o for o in d["options"]}
    assert [o["type"] for o in d["options"]] == [22, 8, 27, 23, 24]
    assert options["Home Network Prefix"]["prefix"] == "2001:db8:1::/64"
    assert options["Mobile Node Identifier"]["identifier"] == "mn1@example.com"
    assert options["Timestamp"]["timestamp"] == 1251158400.5
    assert options["Timestamp"]["utc"] == "2009-08-25T00:00:00.5Z"
    assert options["Handoff Indicator"]["value"] == 1
    assert options["Access Technology Type"]["value"] == 4


def test_checksum_ok_only_when_addresses_known() -> None:
    _, out, _ = run("--json", V1["hex"])
    assert "checksum_ok" not in json.loads(out)
    _, out, _ = run("--json", "--src", V1["src"], "--dst", "2001:db8::99", V1["hex"])
    assert json.loads(out)["checksum_ok"] is False


@pytest.mark.parametrize("vector", VECTORS, ids=lambda v: v["name"].split()[0])
def test_every_vector_decodes_in_text_and_json(vector: dict) -> None:
    wire = ["--wire", "hac_mag_encoding=literal"] if "literal" in vector["name"] else []
    args = [*wire, "--src", vector["src"], "--dst", vector["dst"], vector["hex"]]
    code, out, _ = run(*args)
    assert code == 0 and "checksum" in out and " ok:" in out
    code, out, _ = run("--json", *args)
    assert code == 0 and json.loads(out)["checksum_ok"] is True


def test_hex_from_stdin_with_spacing() -> None:
    spaced = " ".join(V1["hex"][i : i + 4] for i in range(0, len(V1["hex"]), 4))
    code, out, _ = run("--json", "-", input=spaced + "\n")
    assert code == 0 and json.loads(out)["sequence"] == 1


def test_ipv6_packet_hex_checks_its_own_addresses() -> None:
    from lmaload.wire import decode_mh, encode_ipv6_mh
    from tests.vectors import vector_addresses

    src, dst = vector_addresses(V1)
    packet = encode_ipv6_mh(decode_mh(bytes.fromhex(V1["hex"])).message, src, dst)
    code, out, _ = run("--json", packet.hex())
    d = json.loads(out)
    assert code == 0 and d["checksum_ok"] is True and d["src"] == V1["src"]


@pytest.mark.parametrize(
    ("hex_input", "offset"),
    [("3b0805", 3), ("3a" + V1["hex"][2:], 0), (V1["hex"][:-16], 1), ("3bzz", 1), ("3b0", 1)],
)
def test_invalid_input_exits_1_with_offset(hex_input: str, offset: int) -> None:
    code, out, err = run(hex_input)
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and f"offset {offset}:" in err


def test_bad_options_exit_2() -> None:
    assert run()[0] == 2
    assert run("--src", "::1", V1["hex"])[0] == 2
    assert run("--src", "nope", "--dst", "::1", V1["hex"])[0] == 2
    assert run("--wire", "opt_pbci=203", V1["hex"])[0] == 2
    assert run("--wire", "nonsense=1", V1["hex"])[0] == 2
    assert run("--pcap", str(VECTORS_PCAP), V1["hex"])[0] == 2


def test_pcap_json_every_frame() -> None:
    code, out, err = run("--json", "--pcap", str(VECTORS_PCAP))
    # V7b is the literal Home Agent Control form, which the default config reads as options.
    assert code == 1 and "frame 11:" in err
    frames = [json.loads(line) for line in out.splitlines()]
    assert [f["frame"] for f in frames] == [n for n in range(1, 16) if n != 11]
    assert all(f["checksum_ok"] for f in frames)
    udp = frames[-1]
    assert udp["transport"] == "udp" and udp["dport"] == 5436
    assert udp["outer_src"] == "192.0.2.10" and udp["src"] == "2001:db8:aaaa::1"


def test_pcap_bare_mh_over_udp(tmp_path) -> None:
    """Some peers send the MH over UDP/5436 without the RFC 5844 inner IPv6 header."""
    mh = bytes.fromhex(V1["hex"])
    frame = ethernet_frame(
        ipv4_packet("192.0.2.10", "198.51.100.1", 17, udp_datagram(
            "192.0.2.10", "198.51.100.1", 5436, 5436, mh))
    )  # fmt: skip
    path = tmp_path / "bare.pcap"
    write_pcap(path, [(0.0, frame)])
    code, out, _ = run("--json", "--pcap", str(path))
    d = json.loads(out)
    assert code == 0 and d["sequence"] == 1 and "checksum_ok" not in d


def test_bad_capture_file_exits_1(tmp_path) -> None:
    path = tmp_path / "junk.pcap"
    path.write_bytes(b"not a capture at all")
    code, _, err = run("--pcap", str(path))
    assert code == 1 and err.count("\n") == 1 and "offset 0" in err


def test_installed_script_prints_no_traceback() -> None:
    for args, want in ([["3b08"], 1], [["--src", "x", "3b"], 2], [[V1["hex"]], 0]):
        proc = subprocess.run(
            [sys.executable, "-m", "lmaload", "decode", *args], capture_output=True, text=True
        )
        assert proc.returncode == want, proc.stderr
        assert "Traceback" not in proc.stderr


def test_every_option_of_every_command_has_a_help_text() -> None:
    def options(command: click.Command, name: str):
        if isinstance(command, click.Group):
            for sub, child in command.commands.items():
                yield from options(child, f"{name} {sub}")
            return
        for param in command.params:
            if isinstance(param, click.Option):
                yield name, param

    missing = [f"{name} {p.opts[0]}" for name, p in options(main, "lmaload") if not p.help]
    assert missing == []


def test_home_agent_control_shows_the_mag_address_as_it_was_carried() -> None:
    """The option form lists the MAG Address option first among the options; the literal form
    (seed Figure 6) shows the literal field, and no option."""
    v7, v7b = vector_named("V7"), vector_named("V7b")
    code, out, _ = run("--json", "--src", v7["src"], "--dst", v7["dst"], v7["hex"])
    option_form = json.loads(out)
    assert code == 0 and "mag_address" not in option_form
    first = option_form["options"][0]
    assert first["name"] == "MAG Address" and first["type"] == 204
    addresses = (v7b["src"], v7b["dst"])
    code, out, _ = run(
        "--json", "--wire", "hac_mag_encoding=literal", "--src", addresses[0], "--dst",
        addresses[1], v7b["hex"],
    )  # fmt: skip
    literal = json.loads(out)
    assert code == 0 and literal["mag_address"] == first["address"]
    assert all(o["name"] != "MAG Address" for o in literal["options"])
