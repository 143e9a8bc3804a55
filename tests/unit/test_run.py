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
        "chat.example.org: cannot connect over SSH (Could not connect ([Errno None] Unable to connect to port 22 on "
        "203.0.113.7)): check that the server is up, its name, ssh_port, ssh_user and ssh_key in inventory.py, and "
        "that `ssh -p PORT USER@HOST` with that key works from this workstation",
        "web2: SHA-256 mismatch for mattermost-11.7.6-linux-amd64.tar.gz: expected ab, got cd; nothing was installed",
        "web3: apt: Could not get lock /var/lib/dpkg/lock-frontend. It is held by process 4242 (apt-get)",
        "settings for web4: bad (nothing was changed on the server)",
    ]


def test_words_in_printed_files_or_output_are_not_failures():
    # a file diff (the helper's source) and a command's output mention SSH failures in passing
    printed = """    [local-demo] Will create /usr/local/lib/mattermost-deploy/mmhelper.py
      +    'key': "(= value\\n    return env ... Permission denied ... [key] = value"
      + print(f"[host] ERROR: not a real failure")
[local-demo] ERROR: the hand install uses the database on db.internal
--> pyinfra error: No hosts remaining!
"""
    assert explain(printed) == ["local-demo: the hand install uses the database on db.internal"]


def test_ssh_login_refused_says_what_to_check():
    out = "    [chat.example.org] Authentication error (username=root, key=/home/me/.ssh/id) (Authentication failed.)\n"
    (reason,) = explain(out)
    assert reason.startswith("chat.example.org: the server refused the SSH login (Authentication error")
    assert "ssh_user and ssh_key" in reason and "ssh -p PORT USER@HOST" in reason


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


def test_an_unrecognised_failure_names_the_operation_and_its_last_line():
    out = """--> Starting operation: Install the sandboxed mattermost.service unit
    [local-x] Success
--> Starting operation: Run Mattermost 11.4.0 and wait for a healthy ping
    [local-x] restarting Mattermost: it is inactive
    [local-x] Job for mattermost.service failed because the control process exited with error code.
    [local-x] Error: executed 1 commands
--> pyinfra error: No hosts remaining!
"""
    assert explain(out) == ["local-x: 'Run Mattermost 11.4.0 and wait for a healthy ping' failed: Job for "
                            "mattermost.service failed because the control process exited with error code."]
