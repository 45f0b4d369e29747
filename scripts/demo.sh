#!/usr/bin/env bash
# The 5-minute story, run for you (`make demo`): start the two-cluster onebox
# (bjsrv-account on 127.0.0.1:34601, tjsrv-account on 127.0.0.1:35601), create table `temp`
# in both, write and read a few keys with the Python client and with the shell, print the
# status, and leave the clusters running. Stop them with `.venv/bin/dupkv onebox stop`.
set -euo pipefail
cd "$(dirname "$0")/.."

DUPKV=.venv/bin/dupkv
PY=.venv/bin/python
BJ_META=127.0.0.1:34601
TJ_META=127.0.0.1:35601

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "1. start the onebox: two clusters, each a meta server and three replica servers"
if "$DUPKV" onebox status >/dev/null 2>&1; then
  echo "the onebox in ./onebox is already running; using it"
else
  "$DUPKV" onebox start
fi

step "2. create table temp (8 partitions) in both clusters, with the Python client"
"$PY" - "$BJ_META" "$TJ_META" <<'EOF'
import sys

from dupkv.client.blocking import BlockingClient

for meta in sys.argv[1:]:
    with BlockingClient(meta) as client:
        app_id = client.create_table("temp", partition_count=8, success_if_exist=True)
        name = client.cluster_info()["cluster_name"]
        print(f"{name} ({meta}): table temp has app_id {app_id}")
EOF

step "3. write and read a few keys in bjsrv-account with the Python client"
"$PY" - "$BJ_META" <<'EOF'
import sys

from dupkv.client.blocking import BlockingClient

with BlockingClient(sys.argv[1]) as client:
    table = client.open_table("temp")
    for i in range(3):
        table.set(b"demo", f"sk{i}".encode(), f"value {i} from python".encode())
    table.set(b"demo", b"short-lived", b"gone in a minute", ttl_seconds=60)
    for i in range(3):
        print(f"get demo sk{i} -> {table.get(b'demo', f'sk{i}'.encode())!r}")
    print(f"ttl demo short-lived -> {table.ttl(b'demo', b'short-lived')} s")
    print(f"sortkey_count demo -> {table.sortkey_count(b'demo')}")
EOF

step "4. the same table through the shell: write one key, read it and one Python wrote"
# A failure here is reported at the end, after the status and the stop hint.
shell_rc=0
"$DUPKV" shell --meta "$BJ_META" \
  -e "use temp; set demo sk_shell hello_from_the_shell; get demo sk_shell; get demo sk0" \
  || shell_rc=$?

step "5. cluster status"
"$DUPKV" onebox status

step "6. duplicate temp between the two clusters, in both directions"
# `dup add` answers ERR_DUP_EXIST when the demo runs again on a running onebox: fine.
"$DUPKV" shell --meta "$BJ_META" -e "use temp; dup add -c tjsrv-account" || true
"$DUPKV" shell --meta "$TJ_META" -e "use temp; dup add -c bjsrv-account" || true
sleep 2  # the replica servers learn about new duplications at their next sync (1 s)

step "7. a write in one datacenter reaches the other; concurrent writes converge"
"$PY" - "$BJ_META" "$TJ_META" <<'EOF'
import sys
import time

from dupkv.client.blocking import BlockingClient

with BlockingClient(sys.argv[1]) as bj, BlockingClient(sys.argv[2]) as tj:
    bj_t, tj_t = bj.open_table("temp"), tj.open_table("temp")
    stamp = str(time.time()).encode()
    started = time.monotonic()
    bj_t.set(b"dup_demo", b"from_bj", stamp)
    while tj_t.get(b"dup_demo", b"from_bj") != stamp:
        if time.monotonic() - started > 10:
            sys.exit("the write did not reach tjsrv-account within 10 s")
        time.sleep(0.005)
    ms = (time.monotonic() - started) * 1000
    print(f"written in bjsrv-account, visible in tjsrv-account after {ms:.0f} ms")
    # The same key written on both sides at once: the last writer wins everywhere.
    bj_t.set(b"dup_demo", b"both", b"bj wrote this")
    tj_t.set(b"dup_demo", b"both", b"tj wrote this")
    time.sleep(2)
    a, b = bj_t.get(b"dup_demo", b"both"), tj_t.get(b"dup_demo", b"both")
    verdict = "the same" if a == b else "DIFFERENT"
    print(f"after concurrent writes: bj has {a!r}, tj has {b!r}: {verdict}")
EOF
"$DUPKV" shell --meta "$BJ_META" -e "use temp; dup list"

step "done: both clusters are still running"
cat <<EOF
  shell:  $DUPKV shell --meta $BJ_META        (tjsrv-account: --meta $TJ_META)
  status: $DUPKV onebox status
  stop:   $DUPKV onebox stop      (or \`$DUPKV onebox clean\` to also delete ./onebox)
EOF
if [ "$shell_rc" -ne 0 ]; then
  echo "demo: the shell step (4) failed with exit code $shell_rc" >&2
  exit 1
fi
