"""Every request the Hub client makes for us goes to the endpoint the user named, whatever state the
client's module constants are in (huggingface_hub reads ``HF_ENDPOINT`` once, at import, and swaps
``endpoint=`` only into URLs built on those constants; code that changes ``constants.ENDPOINT`` later,
as publishing on 0.x needs, used to send base downloads and their token to huggingface.co)."""

from __future__ import annotations

import threading
import time

import pytest
from huggingface_hub import constants, file_download, hf_hub_url
from support.base_fetch_support import no_local_bases, serve_base
from support.server_fixtures import isolate_from_machine
from support.store_support import safetensors_bytes

from adapterhub.store.base_fetch import fetch_base
from adapterhub.store.hub_repo import client_routed_to

STRANGER = "http://127.0.0.1:9"  # nothing listens on the discard port: a request there fails at once
BASE = {"config.json": b'{"model_type": "bert"}', "model.safetensors": safetensors_bytes(2_000)}


def url_state() -> tuple[str, ...]:
    values = [constants.ENDPOINT, constants.HUGGINGFACE_CO_URL_TEMPLATE]
    if isinstance(getattr(file_download, "HUGGINGFACE_CO_URL_TEMPLATE", None), str):
        values.append(file_download.HUGGINGFACE_CO_URL_TEMPLATE)
    return tuple(values)


@pytest.mark.network_local
@pytest.mark.parametrize("state", ["endpoint-changed-after-import", "client-at-default-hub"])
def test_a_base_fetch_reaches_the_named_endpoint_whatever_the_clients_constants_say(state, hub, cache, monkeypatch,
                                                                                      tmp_path):
    commit = serve_base(hub, monkeypatch, "org/routed", BASE)
    hf_cache = no_local_bases(monkeypatch, tmp_path, "org/routed")
    isolate_from_machine(monkeypatch, tmp_path)
    default = "https://huggingface.co"  # the client as imported without HF_ENDPOINT
    for module in (constants, file_download):
        if isinstance(getattr(module, "HUGGINGFACE_CO_URL_TEMPLATE", None), str):
            monkeypatch.setattr(module, "HUGGINGFACE_CO_URL_TEMPLATE", default + "/{repo_id}/resolve/{revision}/{filename}")
    # ... and then its endpoint constant changed, as the docs/security.md example leaves it
    monkeypatch.setattr(constants, "ENDPOINT", STRANGER if state == "endpoint-changed-after-import" else default)
    before = url_state()
    fetched = fetch_base("org/routed", commit, endpoint=hub.endpoint)
    assert (hf_cache / "models--org--routed" / "snapshots" / commit / "model.safetensors").read_bytes() == \
        BASE["model.safetensors"] and fetched.downloaded == sum(map(len, BASE.values()))
    assert url_state() == before  # put back as it was


def test_inside_the_block_every_url_is_on_the_endpoint_and_the_state_comes_back_after_an_error(monkeypatch):
    monkeypatch.setattr(constants, "ENDPOINT", STRANGER)
    before = url_state()
    with pytest.raises(RuntimeError), client_routed_to("http://127.0.0.1:8/hub/"):
        assert hf_hub_url("a/b", "f.bin", revision="main") == "http://127.0.0.1:8/hub/a/b/resolve/main/f.bin"
        assert hf_hub_url("a/b", "f.bin", endpoint="http://127.0.0.1:8/hub").startswith("http://127.0.0.1:8/hub/")
        with client_routed_to("http://127.0.0.1:8/hub"):  # nested, same endpoint: no wait
            assert constants.ENDPOINT == "http://127.0.0.1:8/hub"
        assert constants.ENDPOINT == "http://127.0.0.1:8/hub"  # the outer block still holds it
        raise RuntimeError("boom")
    assert url_state() == before


def test_blocks_for_different_endpoints_take_turns():
    seen: list[tuple[str, str]] = []
    inside = threading.Event()

    def other() -> None:
        inside.wait(5)
        with client_routed_to("http://127.0.0.1:2"):
            seen.append(("second", constants.ENDPOINT))

    thread = threading.Thread(target=other)
    thread.start()
    with client_routed_to("http://127.0.0.1:1"):
        inside.set()
        time.sleep(0.2)  # the other thread is waiting now; it must not have changed our endpoint
        seen.append(("first", hf_hub_url("a/b", "f", endpoint="http://127.0.0.1:1")))
    thread.join(5)
    assert seen == [("first", "http://127.0.0.1:1/a/b/resolve/main/f"), ("second", "http://127.0.0.1:2")]
