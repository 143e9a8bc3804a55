"""How a failed run is summed up for the operator: one line per cause, in order."""

from tasks.run import explain

OUTPUT = """--> Connecting to hosts...
    [chat.example.org] Could not connect ([Errno None] Unable to connect to port 22 on 203.0.113.7)
--> Starting operation: Download, verify and unpack Mattermost 11.7.6
[web2] ERROR: SHA-256 mismatch for mattermost-11.7.6-linux-amd64.tar.gz: expected ab, got cd; nothing was installed
    [web2] Error: executed 0 commands
[web2] ERROR: SHA-256 mismatch for mattermost-11.7.6-linux-amd64.tar.gz: expected ab, got cd; nothing was installed
    [web3] E: Could not get lock /var/lib/dpkg/lock-frontend. It is held by process 4242 (apt-get)
--> pyinfra error in tasks/settings.py line 178: settings for web4: bad (nothing was changed on the server)
--> pyinfra error: No hosts remaining!
"""


def test_each_cause_once_in_order():
    assert explain(OUTPUT) == [
        "cannot reach chat.example.org over SSH ([Errno None] Unable to connect to port 22 on 203.0.113.7): check "
        "that the server is up, its name and ssh_port in inventory.py, and that `ssh` with your key works from this "
        "workstation",
        "web2: SHA-256 mismatch for mattermost-11.7.6-linux-amd64.tar.gz: expected ab, got cd; nothing was installed",
        "web3: apt: Could not get lock /var/lib/dpkg/lock-frontend. It is held by process 4242 (apt-get)",
        "settings for web4: bad (nothing was changed on the server)",
    ]


def test_nothing_recognised():
    assert explain("--> pyinfra error: No hosts remaining!\n") == []


def test_a_run_that_would_ask_without_a_terminal_says_what_to_do_instead():
    import subprocess
    import sys

    from tasks.run import ROOT

    proc = subprocess.run([sys.executable, "-m", "tasks.run"], cwd=ROOT, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "FAILED: this run asks before it changes anything, and there is no terminal to answer: see the changes "
        "with `make diff`, then run it again with YES=1 (e.g. `make deploy YES=1`)"]
