"""The node's DHT helpers (peerlab.apps.bt_dht): bootstrap names resolved to
addresses, the port fallback, the saved table, the status shape."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from peerlab.apps.bt_dht import (
    PORT_FILE,
    STATE_FILE,
    dht_status,
    resolve_bootstrap,
    start_node_dht,
)
from peerlab.errors import AddressInUse
from peerlab.runtime.worlds import RealWorld


def test_bootstrap_literals_pass_and_names_resolve() -> None:
    got = asyncio.run(resolve_bootstrap([("127.0.0.1", 6881), ("localhost", 7000),
                                         ("127.0.0.1", 6881)]))  # fmt: skip
    assert got == (("127.0.0.1", 6881), ("127.0.0.1", 7000))


def test_dht_port_taken_and_table_saved(real: RealWorld, tmp_path: Path) -> None:
    rt = real.new_runtime("node")
    state = tmp_path / "bittorrent"
    first = start_node_dht(rt, host="127.0.0.1", port=0, bootstrap=(), state_dir=state)
    assert first.address is not None
    with pytest.raises(AddressInUse, match="dht_port"):
        start_node_dht(rt, host="127.0.0.1", port=first.address[1], bootstrap=(),
                       state_dir=state)  # fmt: skip
    st = dht_status(first)
    assert st is not None and st["nodes"] == 0
    assert st["address"] == f"127.0.0.1:{first.address[1]}"
    assert dht_status(None) is None
    node_id = first.node_id
    first.close()
    assert (state / STATE_FILE).exists()
    again = start_node_dht(rt, host="127.0.0.1", port=None, bootstrap=(), state_dir=state)
    assert again.node_id == node_id  # the saved id is kept
    assert again.address is not None
    remembered = again.address[1]
    assert (state / PORT_FILE).read_text() == f"{remembered}\n"
    again.close()
    # unset port: the last one again while it is free ...
    third = start_node_dht(rt, host="127.0.0.1", port=None, bootstrap=(), state_dir=state)
    assert third.address == ("127.0.0.1", remembered)
    # ... and any free one when it is taken
    fourth = start_node_dht(rt, host="127.0.0.1", port=None, bootstrap=(), state_dir=state)
    assert fourth.address is not None and fourth.address[1] != remembered
    third.close()
    fourth.close()
