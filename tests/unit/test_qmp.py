"""The QMP client and memory hotplug against a fake QMP peer and a fake guest shell."""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path
from typing import Any, Callable

import pytest

from harness.errors import GuestTimeout
from harness.guest.hotplug import Hotplug, HotplugError
from harness.guest.qmp import Qmp, QmpError
from harness.guest.serial import CommandResult

Reply = Callable[[dict[str, Any]], list[dict[str, Any]]]  # a command -> messages to send


class FakeQmp:
    """A QMP peer on a unix socket: greets, then answers each command with ``reply``."""

    def __init__(self, path: Path, reply: Reply, greeting: dict | None = None) -> None:
        self.path = path
        self.reply = reply
        self.greeting = greeting or {"QMP": {"version": {}, "capabilities": []}}
        self.commands: list[dict[str, Any]] = []
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(str(path))
        self.server.listen(1)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.server.accept()
        with conn:
            conn.sendall(json.dumps(self.greeting).encode() + b"\n")
            buffer = b""
            while True:
                data = conn.recv(65536)
                if not data:
                    return
                buffer += data
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    command = json.loads(line)
                    self.commands.append(command)
                    for message in self.reply(command):
                        if message.get("close"):
                            return
                        if "return" in message or "error" in message:
                            message = {**message, "id": command["id"]}
                        conn.sendall(json.dumps(message).encode() + b"\n")

    def close(self) -> None:
        self.server.close()


def ok(value: Any = None) -> list[dict[str, Any]]:
    return [{"return": {} if value is None else value}]


@pytest.fixture
def peer(tmp_path):
    peers: list[FakeQmp] = []

    def make(reply: Reply, **kwargs: Any) -> FakeQmp:
        peers.append(FakeQmp(tmp_path / f"qmp{len(peers)}.sock", reply, **kwargs))
        return peers[-1]

    yield make
    for made in peers:
        made.close()


def test_execute_returns_and_keeps_events(peer):
    def reply(command):
        if command["execute"] == "query-status":
            return [{"event": "RESUME", "data": {}}, *ok({"status": "running"})]
        return ok()

    fake = peer(reply)
    qmp = Qmp(fake.path)
    assert qmp.execute("query-status") == {"status": "running"}
    assert fake.commands[0] == {"execute": "qmp_capabilities", "id": "pte-1"}
    assert qmp.wait_event("RESUME", 1.0)["event"] == "RESUME"
    qmp.close()


def test_refusal_names_command_and_qemu_error(peer):
    def reply(command):
        if command["execute"] == "device_add":
            return [{"error": {"class": "GenericError", "desc": "no slot free"}}]
        return ok()

    qmp = Qmp(peer(reply).path)
    with pytest.raises(QmpError, match="QEMU refused device_add .*GenericError: no slot free"):
        qmp.execute("device_add", driver="pc-dimm", id="d")


def test_silent_qemu_times_out(peer):
    qmp = Qmp(peer(lambda c: ok() if c["execute"] == "qmp_capabilities" else []).path)
    start = time.monotonic()
    with pytest.raises(GuestTimeout, match="no the reply to QMP query-status|reply to QMP query-status"):
        qmp.execute("query-status", timeout=0.05)
    assert time.monotonic() - start < 2
    with pytest.raises(GuestTimeout, match="DEVICE_DELETED"):
        qmp.wait_event("DEVICE_DELETED", 0.05)


def test_qemu_going_away_is_an_error(peer):
    qmp = Qmp(peer(lambda c: ok() if c["execute"] == "qmp_capabilities" else [{"close": 1}]).path)
    with pytest.raises(QmpError, match="closed its QMP socket"):
        qmp.execute("quit")


def test_not_a_qmp_socket(peer):
    with pytest.raises(QmpError, match="is not a QMP socket"):
        Qmp(peer(ok, greeting={"hello": 1}).path)


def test_no_socket_at_all(tmp_path):
    with pytest.raises(QmpError, match="cannot connect"):
        Qmp(tmp_path / "missing.sock", timeout=0.05)


class FakeGuest:
    """The guest's side of hotplug: memory blocks in a dict, sysfs writes as shell commands."""

    def __init__(self, refuse: str = "", hang: bool = False) -> None:
        self.blocks: dict[int, str] = {}
        self.refuse = refuse
        self.hang = hang
        self.commands: list[str] = []

    def run(self, command: str, timeout: float) -> CommandResult:
        self.commands.append(command)
        if command.startswith("cat /sys/devices/system/memory/block_size_bytes"):
            return CommandResult(command, 0, "8000000\n", 0.0)
        if command.startswith("for i in"):  # waiting for the new blocks to appear
            wanted = [int(p.rsplit("memory", 1)[1].rstrip(";")) for p in command.split() if "/memory/memory" in p]
            return CommandResult(command, 0 if all(b in self.blocks for b in wanted) else 1, "", 0.0)
        if command.startswith("cat "):
            states = [self.blocks[int(p.split("memory")[-1].split("/")[0])]
                      for p in command.split()[1:]]
            return CommandResult(command, 0, "\n".join(states) + "\n", 0.0)
        if command.startswith("timeout"):
            state = command.split("echo ")[1].split(" >")[0]
            block = int(command.split("/memory/memory")[1].split("/")[0])
            if state == "offline" and self.hang:
                return CommandResult(command, 137, "", timeout)
            if state == self.refuse:
                return CommandResult(command, 1, "sh: write error: Device or resource busy\n", 0.0)
            self.blocks[block] = "online" if state.startswith("online") else state
            return CommandResult(command, 0, "", 0.0)
        raise AssertionError(command)


def dimm_qemu(guest: FakeGuest, eject_status: int = 0, release: bool = True) -> Reply:
    """QEMU's side: pc-dimms at 4G upwards; device_del ejects through the guest."""
    devices: dict[str, dict[str, Any]] = {}
    backends: dict[str, int] = {}

    def reply(command):
        name, args = command["execute"], command.get("arguments", {})
        if name == "object-add":
            backends[args["id"]] = args["size"]
        elif name == "object-del":
            del backends[args["id"]]
        elif name == "device_add":
            address = 4 << 30 if not devices else max(d["addr"] + d["size"] for d in devices.values())
            devices[args["id"]] = {"id": args["id"], "addr": address, "size": backends[args["memdev"]],
                                   "node": args.get("node", 0)}
            for block in range(address >> 27, (address + backends[args["memdev"]]) >> 27):
                guest.blocks[block] = "offline"
        elif name == "query-memory-devices":
            return ok([{"type": "dimm", "data": data} for data in devices.values()])
        elif name == "device_del":
            data = devices[args["id"]]
            ost = {"event": "ACPI_DEVICE_OST",
                   "data": {"info": {"device": args["id"], "source": 3, "status": eject_status}}}
            if eject_status or not release:
                return [*ok(), ost] if eject_status else ok()
            for block in range(data["addr"] >> 27, (data["addr"] + data["size"]) >> 27):
                del guest.blocks[block]
            del devices[args["id"]]
            pending = {"event": "ACPI_DEVICE_OST",  # 0x84: ejection in progress, not a refusal
                       "data": {"info": {"device": args["id"], "source": 3, "status": 0x84}}}
            return [*ok(), pending, ost, {"event": "DEVICE_DELETED", "data": {"device": args["id"]}}]
        return ok()

    return reply


def test_hotplug_add_online_offline_remove(peer):
    guest = FakeGuest()
    fake = peer(dimm_qemu(guest))
    hotplug = Hotplug(Qmp(fake.path), guest.run)
    dimm = hotplug.add("512M", node=1)
    assert dimm.address == 4 << 30 and dimm.blocks == (32, 33, 34, 35) and dimm.node == 1
    assert hotplug.states(dimm) == {32: "offline", 33: "offline", 34: "offline", 35: "offline"}
    hotplug.online(dimm, "online_movable")
    assert set(hotplug.states(dimm).values()) == {"online"}
    hotplug.offline(dimm)
    hotplug.remove(dimm)
    assert guest.blocks == {} and hotplug.dimms == []
    sent = [(c["execute"], c.get("arguments", {})) for c in fake.commands]
    assert ("device_add", {"driver": "pc-dimm", "id": "hp-dimm1", "memdev": "hp-dimm1-ram",
                           "node": 1}) in sent
    assert sent[-1] == ("object-del", {"id": "hp-dimm1-ram"})


def test_offline_refused_names_block_and_error(peer):
    guest = FakeGuest(refuse="offline")
    hotplug = Hotplug(Qmp(peer(dimm_qemu(guest)).path), guest.run)
    dimm = hotplug.add("256M")
    hotplug.online(dimm)
    with pytest.raises(HotplugError, match=r"refused offline of memory block 32 \(hp-dimm1\): "
                                           r"Device or resource busy"):
        hotplug.offline(dimm)


def test_offline_that_never_finishes_is_a_timeout(peer):
    guest = FakeGuest(hang=True)
    hotplug = Hotplug(Qmp(peer(dimm_qemu(guest)).path), guest.run)
    dimm = hotplug.add("128M")
    hotplug.online(dimm)
    with pytest.raises(GuestTimeout, match="offline of memory block 32 .* did not finish within 5s"):
        hotplug.offline(dimm, timeout=5)
    assert "timeout -s KILL 5 " in guest.commands[-1]


def test_eject_refused_by_the_guest(peer):
    guest = FakeGuest()
    hotplug = Hotplug(Qmp(peer(dimm_qemu(guest, eject_status=0x1)).path), guest.run)
    dimm = hotplug.add("128M")
    with pytest.raises(HotplugError, match="refused to eject hp-dimm1 .*_OST status 0x1"):
        hotplug.remove(dimm, timeout=1)


def test_eject_never_acknowledged_times_out(peer):
    guest = FakeGuest()
    hotplug = Hotplug(Qmp(peer(dimm_qemu(guest, release=False)).path), guest.run)
    dimm = hotplug.add("128M")
    with pytest.raises(GuestTimeout, match="did not release hp-dimm1 .* within 0s"):
        hotplug.remove(dimm, timeout=0.05)


def test_dimm_must_fill_whole_blocks(peer):
    guest = FakeGuest()
    hotplug = Hotplug(Qmp(peer(dimm_qemu(guest)).path), guest.run)
    with pytest.raises(Exception, match="multiple of the guest's memory block size"):
        hotplug.add("100M")
