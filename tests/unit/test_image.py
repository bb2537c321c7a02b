import stat
import subprocess

from harness.guest import image


def test_newc_readable_by_cpio(tmp_path):
    data = image.newc([image.Entry("dir", stat.S_IFDIR | 0o755),
                       image.Entry("dir/file", stat.S_IFREG | 0o644, b"abc"),
                       image.Entry("dev/console", stat.S_IFCHR | 0o600, rdev=(5, 1))])
    listing = subprocess.run(["cpio", "-itv"], input=data, capture_output=True).stdout.decode()
    assert "dir/file" in listing and "5,   1" in listing
    (tmp_path / "out").mkdir()
    subprocess.run(["cpio", "-id", "--quiet", "dir/file"], input=data, cwd=tmp_path / "out", check=True)
    assert (tmp_path / "out" / "dir" / "file").read_bytes() == b"abc"


def test_initramfs_contents(cache, tmp_path):
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    (scripts / "hello.sh").write_text("echo hi\n")
    path = image.build_initramfs(image.ImageRequest(scripts=scripts, programs=("true",)))
    names = subprocess.run(["cpio", "-it"], stdin=path.open("rb"), capture_output=True).stdout.decode().split()
    for name in ["init", "bin/busybox", "dev/console", "scripts/hello.sh", "proc", "sys"]:
        assert name in names
    assert any(n.endswith("/true") for n in names)
    assert any("libc.so" in n for n in names) and any("ld-linux" in n for n in names)
    assert image.build_initramfs(image.ImageRequest(scripts=scripts, programs=("true",))) == path


def test_init_mounts_and_ready_line():
    for mount in ["mount -t proc", "mount -t sysfs", "mount -t devtmpfs", "mount -t debugfs"]:
        assert mount in image.init_script()
    assert image.READY in image.init_script() and "/dev/ttyS1" in image.init_script()


def test_guest_sources_compiled_static(cache, tmp_path):
    sources = tmp_path / "src"
    sources.mkdir()
    (sources / "hello.c").write_text("#include <stdio.h>\nint main(void) { puts(\"hi\"); return 0; }\n")
    path = image.build_initramfs(image.ImageRequest(sources=sources))
    names = subprocess.run(["cpio", "-it"], stdin=path.open("rb"), capture_output=True).stdout.decode().split()
    assert "usr/local/bin/hello" in names
    binary = image.compile_static(sources / "hello.c")
    assert image.is_static(binary) and subprocess.run([binary], capture_output=True).stdout == b"hi\n"


def test_guest_source_compile_error_named(cache, tmp_path):
    import pytest
    from harness.errors import BuildError
    (tmp_path / "bad.c").write_text("int main(void) { return x; }\n")
    with pytest.raises(BuildError, match="bad.c does not compile"):
        image.compile_static(tmp_path / "bad.c")


def test_ssh_image(cache, tmp_path):
    key = tmp_path / "hostkey"
    key.write_bytes(b"secret host key")
    path = image.build_initramfs(image.ImageRequest(host_key=key))
    assert path.stat().st_mode & 0o777 == 0o600  # holds a private key
    listing = subprocess.run(["cpio", "-itv"], stdin=path.open("rb"), capture_output=True).stdout.decode()
    modes = {line.split()[-1]: line.split()[0] for line in listing.splitlines()}
    assert modes["etc/dropbear/dropbear_ed25519_host_key"] == "-rw-------"
    assert modes["root/.ssh"] == "drwx------" and modes["etc/dropbear"] == "drwx------"
    assert "usr/sbin/dropbear" in modes and any("libtomcrypt" in n for n in modes)
    for name in ["etc/passwd", "etc/group", "etc/shells", "etc/nsswitch.conf", "etc/profile"]:
        assert name in modes
    out = tmp_path / "x"
    out.mkdir()
    subprocess.run(["cpio", "-id", "--quiet", "etc/passwd", "etc/dropbear/*"], stdin=path.open("rb"),
                   cwd=out, check=True)
    assert (out / "etc/passwd").read_text().startswith("root:x:0:0:root:/root:/bin/sh")
    assert (out / "etc/dropbear/dropbear_ed25519_host_key").read_bytes() == b"secret host key"


def test_serial_image_has_no_ssh(cache, tmp_path):
    path = image.build_initramfs(image.ImageRequest())
    names = subprocess.run(["cpio", "-it"], stdin=path.open("rb"), capture_output=True).stdout.decode().split()
    assert "usr/sbin/dropbear" not in names and "etc/dropbear" not in names
    assert path.stat().st_mode & 0o777 == 0o644


def test_init_ssh_branch():
    init = image.init_script()
    branch = init[init.index('*" pte_harness.ssh "*)'):init.index('*" pte_harness.interactive "*)')]
    for part in ["mount -t devpts", "ip link set lo up", "ip addr add 10.0.2.15/24 dev eth0",
                 "ip link set eth0 up", "pte_harness.authkey=*", "umask 077",
                 "/root/.ssh/authorized_keys", "dropbear -F -E -s",
                 "-r /etc/dropbear/dropbear_ed25519_host_key", "pte_harness.sshd=off"]:
        assert part in branch, part
