"""The mobile-node population: deterministic, within its memory budget, and consistent columns;
its export as a subscriber list (``lmaload population``)."""

import csv
import json
from ipaddress import IPv4Address, IPv6Address, IPv6Network

import numpy as np
import pytest
from click.testing import CliRunner

from lmaload.cli import main
from lmaload.population import MN_DTYPE, PopulationSpec, SessionState, generate, subscribers
from lmaload.run import RunConfig

BYTES_PER_NODE_BUDGET = 150


def test_same_spec_same_arrays() -> None:
    spec = PopulationSpec(mns=5000, mags=17, seed=42, ll_id_share=0.3)
    a, b = generate(spec), generate(spec)
    assert a.mns.tobytes() == b.mns.tobytes() and a.mags.tobytes() == b.mags.tobytes()
    other = generate(PopulationSpec(mns=5000, mags=17, seed=43, ll_id_share=0.3))
    assert a.mns.tobytes() != other.mns.tobytes()


def test_row_size_is_within_budget() -> None:
    assert MN_DTYPE.itemsize <= BYTES_PER_NODE_BUDGET


def test_columns() -> None:
    spec = PopulationSpec(mns=1000, mags=10, seed=1, first_id=500, ll_id_share=0.5)
    pop = generate(spec)
    assert pop.nai(0) == b"mn500@example.com" and pop.nai(999) == b"mn1499@example.com"
    # MNs are spread evenly over MAGs.
    assert np.bincount(pop.mns["mag"]).tolist() == [100] * 10
    assert pop.prefix(3) == (IPv6Address("2001:db8:0:1f7::"), 64)
    assert all(IPv6Address(pop.mns["hnp"][i].tobytes()) in IPv6Network("2001:db8::/32")
               for i in range(0, 1000, 97))  # fmt: skip
    assert set(np.unique(pop.mns["att"]).tolist()) <= {4, 7, 8}
    assert (pop.mns["state"] == SessionState.IDLE).all()
    with_ll = pop.mns["ll_len"] == 6
    assert 0.4 < with_ll.mean() < 0.6
    row = int(np.flatnonzero(with_ll)[0])
    assert pop.mns["ll_id"][row][:6].tobytes() == b"\x02\x00" + (500 + row).to_bytes(4, "big")
    assert pop.mag_address6(0) == IPv6Address("fd00:6d61:6700::1")
    assert pop.mag_address4(9) == IPv4Address("127.1.0.10")


def test_shards_take_disjoint_mn_ids_and_mag_addresses() -> None:
    """Shard i of a run takes its slice of the id space and of the MAGs (``lmaload run
    --shard``): together the shards are the MNs and MAG addresses of one unsharded run."""
    whole = generate(PopulationSpec(mns=1000, mags=10))
    parts = [
        generate(PopulationSpec(mns=500, mags=5, first_id=500 * i, first_mag=5 * i))
        for i in range(2)
    ]
    ids = np.concatenate([p.mns["mn_id"] for p in parts])
    assert np.array_equal(np.sort(ids), whole.mns["mn_id"])
    assert np.array_equal(np.concatenate([p.mags for p in parts]), whole.mags)
    assert parts[1].mag_address4(0) == IPv4Address("127.1.0.6")


def test_att_mix_is_respected() -> None:
    pop = generate(PopulationSpec(mns=20000, mags=1, att_mix={8: 3, 4: 1}))
    share = (pop.mns["att"] == 8).mean()
    assert 0.72 < share < 0.78


@pytest.mark.parametrize(
    "spec",
    [
        PopulationSpec(mns=10, mags=0),
        PopulationSpec(mns=300, mags=1, base_prefix="2001:db8::/56"),
        PopulationSpec(mns=10, mags=300, mag_prefix4="127.1.0.0/24"),
        PopulationSpec(mns=2, mags=1, first_id=2**32 - 1),
    ],
)
def test_impossible_specs_are_refused(spec: PopulationSpec) -> None:
    with pytest.raises(ValueError):
        generate(spec)


def test_the_subscriber_list_is_the_runs_population() -> None:
    """``lmaload population`` lists the MNs ``lmaload run`` emulates with the same options."""
    args = ["population", "--mns", "50", "--mags", "7", "--seed", "3"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(result.output.splitlines()))
    pop = generate(RunConfig(mns=50, mags=7, seed=3).population_spec())
    assert [r["nai"] for r in rows] == [f"mn{i}@example.com" for i in range(50)]
    assert [r["mag"] for r in rows] == [str(pop.mag_address6(m)) for m in pop.mns["mag"]]
    assert {r["hnp"] for r in rows} == {""} and {r["link_layer_id"] for r in rows} == {""}
    listed = json.loads(
        CliRunner().invoke(main, [*args, "--format", "json", "--request-prefix"]).output
    )
    assert [r["nai"] for r in listed] == [r["nai"] for r in rows]
    assert listed[1]["hnp"] == "2001:db8:0:1::/64" and listed[1]["mag_ipv4"] == rows[1]["mag_ipv4"]


def test_a_subscriber_link_layer_id_is_colon_hex() -> None:
    pop = generate(PopulationSpec(mns=4, mags=1, ll_id_share=1.0))
    assert next(iter(subscribers(pop, False)))["link_layer_id"] == "02:00:00:00:00:00"
    assert list(subscribers(pop, False))[3]["link_layer_id"] == "02:00:00:00:00:03"
