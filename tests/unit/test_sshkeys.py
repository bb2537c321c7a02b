"""Host keys (dropbearkey, beside the build) and per-boot client keys."""

import stat
import threading

import paramiko

from harness.guest import sshkeys


def test_host_key_generated_private_and_reused(tmp_path):
    directory = tmp_path / "build" / "ssh"
    key = sshkeys.host_key(directory)
    assert key.private == directory / sshkeys.HOST_KEY_NAME
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert stat.S_IMODE(key.private.stat().st_mode) == 0o600
    assert key.public.startswith("ssh-ed25519 AAAA") and len(key.public.split()) == 2
    assert isinstance(key.pkey(), paramiko.Ed25519Key)
    assert sshkeys.host_key(directory) == key  # the same key for the same build
    assert sshkeys.host_key(tmp_path / "other") != key
    assert [p.name for p in directory.iterdir()] == [sshkeys.HOST_KEY_NAME]


def test_concurrent_first_use_agrees(tmp_path):
    keys = []
    threads = [threading.Thread(target=lambda: keys.append(sshkeys.host_key(tmp_path / "k")))
               for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(keys) == 4 and len(set(keys)) == 1


def test_client_keys_fresh_and_usable():
    a, b = sshkeys.new_client_key(), sshkeys.new_client_key()
    assert a.public_blob != b.public_blob
    assert a.public_line == f"ssh-ed25519 {a.public_blob}"
    assert "OPENSSH PRIVATE KEY" in a.private_openssh
    signature = a.pkey.sign_ssh_data(b"data")
    assert paramiko.Ed25519Key(data=a.pkey.asbytes()).verify_ssh_sig(b"data", paramiko.Message(signature.asbytes()))
