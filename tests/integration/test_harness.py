"""The harness's own checks can fail (issue 31): stopping a sidecar sends SIGTERM and fails on a sanitizer
report (printed), a nonzero exit, no exit in time, or a process that died by itself. A stand-in for the
binary (a small Python program that logs as breakerbox does) plays each case."""
import os
import sys
import tempfile
import textwrap
import unittest

import harness

FAKE = textwrap.dedent("""\
    import json, signal, sys, time
    mode = sys.argv[1]
    def log(msg, **f):
        print(json.dumps({"msg": msg, **f}), file=sys.stderr, flush=True)
    def on_term(*_):
        if mode == "leak":
            print("==1==ERROR: LeakSanitizer: detected memory leaks", file=sys.stderr, flush=True)
            print("SUMMARY: AddressSanitizer: 24 byte(s) leaked in 1 allocation(s).", file=sys.stderr, flush=True)
            sys.exit(23)
        if mode == "status":
            sys.exit(3)
        if mode == "ignore":
            return
        sys.exit(0)
    signal.signal(signal.SIGTERM, on_term)
    log("listening", listener="main", port=1)
    log("breakerbox ready")
    if mode == "crash":
        sys.exit(1)
    while True:
        time.sleep(0.05)
    """)


class HarnessStopTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.addCleanup(self.dir.cleanup)
        self.saved = (harness.BREAKERBOX_BIN, harness.STOP_TIMEOUT)
        self.addCleanup(lambda: (setattr(harness, "BREAKERBOX_BIN", self.saved[0]),
                                 setattr(harness, "STOP_TIMEOUT", self.saved[1])))
        harness.STOP_TIMEOUT = 2

    def fake(self, mode):
        path = os.path.join(self.dir.name, "fake-" + mode)
        with open(path, "w") as f:
            f.write("#!/bin/sh\nexec %s %s %s \"$@\"\n" % (sys.executable, os.path.join(self.dir.name, "fake.py"), mode))
        with open(os.path.join(self.dir.name, "fake.py"), "w") as f:
            f.write(FAKE)
        os.chmod(path, 0o755)
        harness.BREAKERBOX_BIN = path
        # The config path argument is ignored by the stand-in.
        return harness.Breakerbox("workers: 1\n")

    def test_a_clean_exit_passes(self):
        self.fake("clean").stop()

    def test_a_sanitizer_report_fails_and_is_printed(self):
        bb = self.fake("leak")
        with self.assertRaises(AssertionError) as caught:
            bb.stop()
        self.assertIn("ERROR: LeakSanitizer: detected memory leaks", str(caught.exception))
        self.assertIn("exited with status 23", str(caught.exception))

    def test_a_nonzero_exit_fails(self):
        with self.assertRaisesRegex(AssertionError, "status 3 after SIGTERM"):
            self.fake("status").stop()

    def test_no_exit_in_time_fails(self):
        with self.assertRaisesRegex(AssertionError, "did not exit within"):
            self.fake("ignore").stop()

    def test_a_process_that_died_by_itself_fails(self):
        bb = self.fake("crash")
        bb.proc.wait(timeout=5)
        with self.assertRaisesRegex(AssertionError, "exited by itself"):
            bb.stop()

    def test_a_process_the_test_signalled_is_only_checked_for_reports(self):
        bb = self.fake("clean")
        bb.signal(9)
        bb.proc.wait(timeout=5)
        bb.stop()


if __name__ == "__main__":
    unittest.main()
