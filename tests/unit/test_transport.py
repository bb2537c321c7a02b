"""Transports are one protocol: a new one plugs in without changes elsewhere."""

from __future__ import annotations

import pytest

from harness import options, pipeline
from harness.errors import UsageError
from harness.guest import transport


class Fake(transport.Serial):
    name = "fake"
    fragments = ("debug.config",)


def test_a_transport_brings_its_fragments_and_is_named_in_errors(monkeypatch):
    monkeypatch.setitem(transport.TRANSPORTS, "fake", Fake())
    chosen = options.Options(transport="fake", series="none")
    assert [p.name for p in chosen.fragment_paths()] == ["base.config", "debug.config"]
    assert pipeline.boot_options(chosen).transport == "fake"
    with pytest.raises(UsageError, match="transport must be one of serial, ssh, fake"):
        options.Options(transport="pigeon")


def test_the_two_transports():
    serial, ssh = transport.by_name("serial"), transport.by_name("ssh")
    assert (serial.fragments, ssh.fragments) == ((), ("net.config",))
    assert serial.plan() == transport.BootPlan(transport.ControlSocket())
    plan = ssh.plan()
    assert isinstance(plan.wiring, transport.PortForward) and plan.client_key is not None
    assert plan.wiring.authkey == plan.client_key.public_blob
    assert plan.wiring.authkey != ssh.plan().client_key.public_blob  # a key per boot
    assert (serial.boot_ratio_target, ssh.boot_ratio_target) == (1.3, None)
