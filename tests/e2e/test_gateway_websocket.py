"""WebSocket (and any protocol switch) passes through the gateway to a sandbox's port."""
import asyncio
import json
import socket
import struct
import time

import pytest
import websockets

from hutch_server import HutchServer, instance_leftovers

ECHO_SERVER = r"""
import asyncio, websockets
async def echo(ws):
    async for m in ws:
        await ws.send("echo:" + m)
async def main():
    async with websockets.serve(echo, "127.0.0.1", 8765):
        await asyncio.Future()
asyncio.run(main())
"""


def envelope(obj):
    data = json.dumps(obj).encode()
    return struct.pack(">BI", 0, len(data)) + data


@pytest.fixture(scope="module")
def sandbox(bindir, tmp_path_factory):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv = HutchServer(bindir, tmp_path_factory.mktemp("ws") / "state", port).start()
    key = srv.create_key()
    status, _, data = srv.request("POST", "/v2/sandboxes", body={"templateID": "base"}, headers={"X-API-KEY": key})
    assert status == 201, data
    sb = json.loads(data)
    headers = {"E2b-Sandbox-Id": sb["sandboxID"], "E2b-Sandbox-Port": "49983", "X-Access-Token": sb["envdAccessToken"],
               "Content-Type": "application/connect+json", "Connect-Protocol-Version": "1", "Connect-Timeout-Ms": "0"}
    # Start the echo server in the background: read the start event and hang up; envd keeps it.
    import http.client
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request("POST", "/process.Process/Start", headers=headers,
              body=envelope({"process": {"cmd": "/usr/bin/python3", "args": ["-c", ECHO_SERVER]}, "stdin": False}))
    r = c.getresponse()
    assert r.status == 200
    r.read(5)
    c.close()
    yield srv, sb
    srv.request("DELETE", f"/sandboxes/{sb['sandboxID']}", headers={"X-API-KEY": key})
    assert srv.stop() == 0, srv.log()
    assert instance_leftovers(srv.state_dir) == []


async def exchange(port, sid, messages):
    deadline = time.monotonic() + 10
    while True:
        try:
            ws = await websockets.connect(f"ws://127.0.0.1:{port}/",
                                          extra_headers={"E2b-Sandbox-Id": sid, "E2b-Sandbox-Port": "8765"})
            break
        except (websockets.exceptions.InvalidStatusCode, OSError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)  # the echo server is still starting
    try:
        out = []
        for m in messages:
            await ws.send(m)
            out.append(await ws.recv())
        return out
    finally:
        await ws.close()


def test_websocket_round_trips_through_the_gateway(sandbox):
    srv, sb = sandbox
    big = "x" * 200_000
    got = asyncio.run(exchange(srv.port, sb["sandboxID"], ["hello", "ünïcode", big]))
    assert got == ["echo:hello", "echo:ünïcode", "echo:" + big]


def test_upgrade_to_a_closed_port_is_502(sandbox):
    srv, sb = sandbox
    status, _, data = srv.request("GET", "/", headers={
        "E2b-Sandbox-Id": sb["sandboxID"], "E2b-Sandbox-Port": "9", "Connection": "Upgrade", "Upgrade": "websocket",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version": "13"})
    assert status == 502
    assert json.loads(data)["message"] == "port is not open in the sandbox"


def test_refused_upgrade_is_relayed_as_an_ordinary_answer(sandbox):
    srv, sb = sandbox
    # The websockets server answers a non-WebSocket upgrade with an HTTP error of its own.
    status, headers, data = srv.request("GET", "/", headers={
        "E2b-Sandbox-Id": sb["sandboxID"], "E2b-Sandbox-Port": "8765", "Connection": "Upgrade", "Upgrade": "h2c"})
    assert 400 <= status < 500
