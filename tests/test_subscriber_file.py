"""The user's subscriber list (``lmaload run --population FILE``): ``lmaload population``'s CSV
and JSON read back into the population ``lmaload run`` generates, rows in any order of MAG, the
shards' parts, a bad row named by file and line (exit 2), and a run of NAIs of any shape against
the embedded pair on loopback with every MN registered."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from ipaddress import IPv6Address
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from lmaload.bulk import encode_pbus
from lmaload.cli import main
from lmaload.population import generate
from lmaload.run import RunConfig
from lmaload.subscriber_file import SubscriberFileError, read_subscribers

HEADER = "nai,link_layer_id,hnp,mag,mag_ipv4"
GOOD = "alice@ims.example.org,02:00:00:00:00:01,2001:db8:0:1::/64,fd00::1,127.1.0.1"


def export(tmp_path: Path, output_format: str, *args: str) -> Path:
    result = CliRunner().invoke(
        main, ["population", "--mns", "120", "--mags", "7", "--format", output_format, *args]
    )
    assert result.exit_code == 0, result.output
    path = tmp_path / f"subscribers.{output_format}"
    path.write_text(result.output)
    return path


@pytest.mark.parametrize("output_format", ["csv", "json"])
def test_round_trip_gives_the_generated_population(tmp_path, output_format) -> None:
    generated = generate(RunConfig(mns=120, mags=7).population_spec())
    read = read_subscribers(export(tmp_path, output_format, "--request-prefix")).population()
    assert read.mns.tobytes() == generated.mns.tobytes()
    assert read.mags.tobytes() == generated.mags.tobytes()
    assert [read.nai(r) for r in range(120)] == [generated.nai(r) for r in range(120)]
    # Without --request-prefix the HNP column is empty: the LMA assigns one.
    plain = read_subscribers(export(tmp_path, output_format)).population()
    assert not plain.mns["hnp_len"].any()
    assert np.array_equal(plain.mns["mag"], generated.mns["mag"])
    # The same run: the PBUs ask for ::/0 either way.
    rows, lma = np.arange(120), IPv6Address("2001:db8::1")
    sent, want = encode_pbus(plain, rows, lma), encode_pbus(generated, rows, lma)
    assert np.array_equal(sent[0], want[0]) and np.array_equal(sent[1], want[1])


def test_rows_in_any_order_of_mag_and_shards(tmp_path) -> None:
    lines = export(tmp_path, "csv").read_text().splitlines()
    rng = np.random.default_rng(3)
    shuffled = tmp_path / "shuffled.csv"
    shuffled.write_text("\n".join([lines[0], *rng.permutation(lines[1:]).tolist()]) + "\n")
    generated = generate(RunConfig(mns=120, mags=7).population_spec())
    subscribers = read_subscribers(shuffled)
    pop = subscribers.population()
    assert pop.mags.tobytes() == generated.mags.tobytes()
    row_of = {generated.nai(r): r for r in range(120)}
    for row in range(120):
        assert pop.mns["mag"][row] == generated.mns["mag"][row_of[pop.nai(row)]]
    # Shards: disjoint slices of the MAG table, together every MN once.
    parts = [subscribers.population((i, 3)) for i in range(3)]
    assert np.array_equal(np.concatenate([p.mags for p in parts]), pop.mags)
    ids = np.concatenate([p.mns["mn_id"] for p in parts])
    assert sorted(ids.tolist()) == list(range(120))
    assert all(p.nai(r) == pop.nai(int(p.mns["mn_id"][r])) for p in parts for r in (0, -1))


BAD_ROWS = [
    (",02:00:00:00:00:01,,fd00::1,127.1.0.1", "nai is 0 octets: an MN-ID option holds 1 to 254"),
    ("n" * 255 + ",,,fd00::1,", "nai is 255 octets"),
    ("bob@x,02:00:zz,,fd00::1,", "link_layer_id '02:00:zz': expected 1 to 8 hex octets"),
    ("bob@x,00:11:22:33:44:55:66:77:88,,fd00::1,", "expected 1 to 8 hex octets"),
    ("bob@x,,2001:db8::/48,fd00::1,", "hnp '2001:db8::/48': expected an IPv6 /64 prefix"),
    ("bob@x,,2001:db8::1/64,fd00::1,", "hnp '2001:db8::1/64': expected an IPv6 /64 prefix"),
    ("bob@x,,,,", "no MAG address: give mag (IPv6) or mag_ipv4 or both"),
    ("bob@x,,,127.0.0.1,", "mag '127.0.0.1': not an IPv6 address"),
    ("bob@x,,,fd00::1,300.1.1.1", "mag_ipv4 '300.1.1.1': not an IPv4 address"),
    ("alice@ims.example.org,,,fd00::2,127.1.0.2", "nai 'alice@ims.example.org' repeats line 2"),
    ("bob@x,,,fd00::1,127.1.0.9", "MAG fd00::1 is given with 127.1.0.1 on line 2, 127.1.0.9"),
    ("bob@x,,,fd00::1,127.1.0.1,extra", "more fields than the header"),
]


@pytest.mark.parametrize("row, reason", BAD_ROWS)
def test_bad_row_is_one_line_naming_file_line_and_reason(tmp_path, row, reason) -> None:
    path = tmp_path / "subscribers.csv"
    path.write_text(f"{HEADER}\n{GOOD}\n{row}\n")
    with pytest.raises(SubscriberFileError, match=f"^{path}:3: ") as caught:
        read_subscribers(path)
    assert reason in str(caught.value)
    result = subprocess.run(
        [sys.executable, "-m", "lmaload", "run", "--population", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"lmaload: run: {path}:3: {caught.value.args[0][len(str(path)) + 4 :]}"
    ]


def test_bad_json_and_header_name_their_line(tmp_path) -> None:
    rows = [dict(zip(HEADER.split(","), GOOD.split(","), strict=True))] * 2
    path = tmp_path / "subscribers.json"
    path.write_text(json.dumps(rows, indent=1))  # the second object starts on line 9
    with pytest.raises(
        SubscriberFileError, match=f"^{path}:9: nai 'alice@ims.example.org' repeats line 2"
    ):
        read_subscribers(path)
    path.write_text('[\n {"nai": "a@b", "mag": "fd00::1"},\n {"nai": }\n]')
    with pytest.raises(SubscriberFileError, match=f"^{path}:3: not JSON"):
        read_subscribers(path)
    path.write_text("name,address\nx,y\n")
    with pytest.raises(SubscriberFileError, match=f"^{path}:1: header 'name,address': expected"):
        read_subscribers(path)
    path.write_text(HEADER + "\n")
    with pytest.raises(SubscriberFileError, match="no subscribers"):
        read_subscribers(path)


@pytest.mark.parametrize("option", [["--mns", "10"], ["--mags", "3"], ["--seed", "1"]])
def test_population_excludes_mns_mags_seed(tmp_path, option) -> None:
    path = tmp_path / "subscribers.csv"
    path.write_text(f"{HEADER}\n{GOOD}\n")
    result = CliRunner().invoke(main, ["run", "--population", str(path), *option])
    assert result.exit_code == 2
    assert result.output.splitlines() == [
        f"lmaload: run: --population gives the MNs and MAGs: not with {option[0]}"
    ]


def test_run_with_nais_of_any_shape_registers_every_mn(tmp_path) -> None:
    path = tmp_path / "subscribers.csv"
    with path.open("w") as out:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(HEADER.split(","))
        for i in range(199, -1, -1):  # rows in no order of MAG
            nai = f"imsi-00101{i:010d}@ims.example.org" if i % 3 else f"mn{i + 7}@{i % 5}.example"
            ll = f"02:00:00:00:00:{i % 256:02x}" if i % 2 else ""
            writer.writerow([nai, ll, "", f"fd00:6d61:6700::{i % 4 + 1:x}", f"127.1.0.{i % 4 + 1}"])
    results = tmp_path / "results.json"
    result = subprocess.run(
        [
            *(sys.executable, "-m", "lmaload", "run", "--population", str(path), "--rate", "500"),
            *("--results", str(results), "--allow-lag"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    document = json.loads(results.read_text())
    assert document["config"]["mns"] == 200 and document["config"]["mags"] == 4
    assert document["config"]["population_file"] == str(path)
    registration = document["registration"]
    assert registration["registered"] == 200 and registration["rejected"] == 0
    assert registration["given_up"] == registration["unanswered"] == 0
    assert registration["pba_status"] == {"0": 200}
    assert document["takeover"]["summary"]["kept"] == 200


@pytest.mark.parametrize(
    "mag, args, reason",
    [
        ("fd00::1,", [], "a MAG without mag_ipv4 cannot send over UDP/5436"),
        (
            "fd00::1,127.1.0.1",
            ["--lab"],
            "MAG fd00::1 is not in fd00:6d61:6700::/64, where the MAGs send the raw Mobility "
            "Header from",
        ),
    ],
)
def test_mags_the_transport_cannot_send_from(tmp_path, mag, args, reason) -> None:
    path = tmp_path / "subscribers.csv"
    path.write_text(f"{HEADER}\nbob@x,,,{mag}\n")
    result = CliRunner().invoke(main, ["run", "--population", str(path), *args])
    assert result.exit_code == 2
    assert result.output.splitlines() == [f"lmaload: run: --population: {reason}"]
