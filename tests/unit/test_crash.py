from harness.guest import crash
from tests.conftest import DATA

WARNING_LOG = """[    1.000000] ok line
[    1.100000] ------------[ cut here ]------------
[    1.100001] WARNING: CPU: 0 PID: 1 at mm/pte_mapped.c:42 pte_mapped_refill+0x10/0x20
[    1.100002] Modules linked in:
[    1.100003] Call Trace:
[    1.100004]  <TASK>
[    1.100005]  pte_mapped_refill+0x10/0x20
[    1.100006]  </TASK>
[    1.100007] ---[ end trace 0000000000000000 ]---
[    1.200000] later line
[    2.000000] BUG: sleeping function called from invalid context at mm/page_alloc.c:4400
[    2.000001] in_atomic(): 1, irqs_disabled(): 0
"""


def test_clean_boot_has_no_findings():
    assert crash.scan((DATA / "console-clean-boot.log").read_text()) == []


def test_sysrq_panic_found_with_trace():
    findings = crash.scan((DATA / "console-sysrq-panic.log").read_text())
    assert findings[0].kind == "panic"
    assert "sysrq triggered crash" in findings[0].excerpt
    assert "Call Trace:" in findings[0].excerpt
    assert len(findings) == 1


def test_warning_and_sleep_in_atomic():
    findings = crash.scan(WARNING_LOG)
    assert [f.kind for f in findings] == ["warning", "sleep-in-atomic"]
    assert findings[0].line == 3 and findings[0].excerpt.endswith("---[ end trace 0000000000000000 ]---")
    assert "later line" not in findings[0].excerpt


def test_lockdep_and_soft_lockup():
    log = ("[ 1.0] WARNING: possible circular locking dependency detected\n\n"
           "[ 2.0] watchdog: BUG: soft lockup - CPU#0 stuck for 22s! [sh:1]\n")
    assert [f.kind for f in crash.scan(log)] == ["lockdep", "soft-lockup"]


def test_restarts():
    assert crash.restarts("[ 0.0] Linux version 6.12\n[ 0.0] Linux version 6.12\n") == 1
    assert crash.restarts((DATA / "console-clean-boot.log").read_text()) == 0


def test_oom_kill_is_a_finding():
    log = "[ 5.0] pte-workload invoked oom-killer: gfp_mask=0x140dca\n[ 5.1] Mem-Info:\n"
    assert [f.kind for f in crash.scan(log)] == ["oom"]


SYSRQ_T = """[   10.1] sysrq: Show State
[   10.1] task:init            state:S stack:0     pid:1     ppid:0      flags:0x00000000
[   10.1] Call Trace:
[   10.1]  <TASK>
[   10.1]  __schedule+0x1/0x2
[   10.1]  </TASK>
[   10.2] task:kthreadd        state:S stack:0     pid:2     ppid:0      flags:0x00000000
[   10.2] Call Trace:
[   10.2]  <TASK>
[   10.2]  </TASK>
"""


def test_a_requested_dump_is_not_a_crash_but_a_report_after_it_is():
    assert crash.scan(SYSRQ_T) == []
    later = SYSRQ_T + "[   11.0] BUG: kernel NULL pointer dereference, address: 0\n[   11.0] Call Trace:\n"
    kinds = [f.kind for f in crash.scan(later)]
    assert kinds == ["bug"]
    assert [f.kind for f in crash.scan("[ 1.0] Call Trace:\n[ 1.0]  foo+0x1\n")] == ["call-trace"]
