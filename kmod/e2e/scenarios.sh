#!/bin/sh
# The kernel module and the daemon together in a real kernel (run inside
# the test VM by init.sh). Each scenario prints PASS or FAIL with the
# reason; the last line is the count. Waits are on events the module
# exposes (wait_instances, flood_wait), not on sleeps.
D=/sys/kernel/debug/spindle_netlink
P=/sys/module/spindle_netlink/parameters
SPINDLE=/e2e/spindle
export XDG_CACHE_HOME=/cache SPINDLE_LOG=warn
passed=0
failed=0

pass() { echo "PASS $1"; passed=$((passed + 1)); }
fail() { echo "FAIL $1: $2"; failed=$((failed + 1)); }
check() { # NAME CONDITION... : pass when the condition holds
    name=$1; shift
    if "$@"; then pass "$name"; else fail "$name" "$(cat /tmp/why 2>/dev/null)"; fi
    rm -f /tmp/why
}
why() { echo "$*" > /tmp/why; }

# call PIPELINE PRIORITY DEADLINE_MS TEXT: the answer lands in /tmp/call.
call() {
    exec 3<>$D/call
    echo "$*" >&3
    cat <&3 > /tmp/call
    exec 3>&-
}
field() { awk -v k="$1" '$1 == k { print $2 }' "${2:-/tmp/call}"; }
stat() { awk -v k="$1" '$1 == k { print $2 }' $D/stats; }
flood() { echo 1 > $D/flood_reset; echo "$*" > $D/flood; }
flood_wait() { cat $D/flood_wait > /tmp/flood; }
fl() { field "$1" /tmp/flood; }
wait_instances() { echo "$1" > $D/wait_instances 2>/dev/null || { why "not $1 instances within 60 s: $(cat $D/instances)"; return 1; }; }
sent_of() { awk -v id="$1" '$2 == id { for (i = 1; i < NF; i++) if ($i == "sent") print $(i + 1) }' $D/instances; }
breaker_of() { awk -v id="$1" '$2 == id { for (i = 1; i < NF; i++) if ($i == "breaker") print $(i + 1) }' $D/instances; }

# start_daemon NAME INSTANCE_ID: a daemon serving kernel.lua over genl.
start_daemon() {
    $SPINDLE netlink-peer --bridge /e2e/kernel.lua --transport genl --instance-id "$2" --window 8 \
        > /tmp/$1.log 2>&1 &
    eval "pid_$1=$!"
}

insmod /e2e/spindle_netlink.ko || { echo "FAIL insmod"; echo "kmod-e2e: 0 passed, 1 failed"; exit 1; }

# 1. No daemon: a request fails at once.
call ingest high 5000 nobody listens
no_daemon() {
    [ "$(field error)" = "-107" ] || { why "error $(field error), expected -107 (ENOTCONN)"; return 1; }
    [ "$(field elapsed_us)" -lt 200000 ] || { why "took $(field elapsed_us) us"; return 1; }
}
check "no daemon: the request fails at once with ENOTCONN" no_daemon

# 2. Requests of each priority; vectors equal to `spindle embed` of the same texts.
start_daemon a 00000000000000a1
check "instance a registers" wait_instances 1
: > /tmp/k.vec
for priority in high medium low; do
    call ingest $priority 120000 "A $priority priority request embeds this sentence."
    if [ "$(field status)" != ok ]; then
        fail "$priority priority request" "$(head -6 /tmp/call; echo "daemon a's log, last lines:"; tail -8 /tmp/a.log)"
    else
        pass "$priority priority request answered ($(field dims) dims, $(field elapsed_us) us)"
    fi
    grep '^vector' /tmp/call >> /tmp/k.vec
done
$SPINDLE embed --model paraphrase-MiniLM-L3-v2 --threads 1 \
    "A high priority request embeds this sentence." \
    "A medium priority request embeds this sentence." \
    "A low priority request embeds this sentence." > /tmp/e.json 2>/tmp/e.log
same_vectors() {
    awk 'NR == FNR { line[FNR] = $0; next }
         { s = $0; sub(/.*"vector":\[/, "", s); sub(/\].*/, "", s); m = split(s, e, ",")
           n = split(line[FNR], k, " ") - 1
           if (n != m || n == 0) { print "text " FNR ": " n " dims from the module, " m " from spindle embed"; bad = 1; next }
           d = 0; for (i = 1; i <= n; i++) { x = k[i + 1] - e[i]; if (x < 0) x = -x; if (x > d) d = x }
           if (d > 0.0001) { print "text " FNR ": max difference " d; bad = 1 }
           else print "text " FNR ": max difference " d }
         END { exit bad }' /tmp/k.vec /tmp/e.json > /tmp/compare || { why "$(cat /tmp/compare) $(cat /tmp/e.log | tail -2)"; return 1; }
    cat /tmp/compare
}
check "vectors equal spindle embed's (max difference 1e-4)" same_vectors
call ingest high 120000 "A high priority request embeds this sentence."
check "the result cache answers a repeated text" [ "$(field cached)" = 1 -a "$(stat cache_hits)" -ge 1 ]

# 3. Two instances share the load (least in flight).
start_daemon b 00000000000000b1
check "instance b registers" wait_instances 2
a_before=$(sent_of 00000000000000a1)
b_before=$(sent_of 00000000000000b1)
flood 6 slow medium 60000 shared load
flood_wait
shared() {
    [ "$(fl ok)" = 6 ] || { why "$(tr '\n' ' ' < /tmp/flood)"; return 1; }
    a=$(( $(sent_of 00000000000000a1) - a_before ))
    b=$(( $(sent_of 00000000000000b1) - b_before ))
    [ "$a" -ge 1 -a "$b" -ge 1 ] || { why "a got $a, b got $b"; return 1; }
    echo "a got $a, b got $b"
}
check "two instances share the load" shared

# 4. An instance killed mid-request: its requests fail at once, the other takes new ones.
flood 6 slow medium 60000 killed mid request
kill -9 $pid_a
flood_wait
killed() {
    [ "$(fl released)" -ge 1 ] || { why "no request failed with ECONNRESET: $(tr '\n' ' ' < /tmp/flood)"; return 1; }
    [ "$(fl timeout)" = 0 ] || { why "requests waited for their deadline: $(tr '\n' ' ' < /tmp/flood)"; return 1; }
    [ $(( $(fl ok) + $(fl released) )) = 6 ] || { why "$(tr '\n' ' ' < /tmp/flood)"; return 1; }
    echo "released $(fl released), ok $(fl ok)"
}
check "a killed instance's requests fail at once (ECONNRESET), not at their deadline" killed
check "the killed instance is gone" wait_instances 1
call ingest high 120000 "after the kill, the other instance answers"
check "the other instance takes new requests" [ "$(field status)" = ok ]

# 5. A hung instance: its breaker opens, then closes after a probe.
echo 1000 > $P/heartbeat_misses
kill -STOP $pid_b
for n in 1 2 3; do call ingest high 300 "hung instance, request $n"; done
timed_out() { [ "$(field error)" = "-110" ] || why "error $(field error), expected -110"; }
check "requests to a hung instance time out" timed_out
call ingest high 300 "hung instance, request 4"
fast_fail() {
    [ "$(field error)" = "-112" ] || { why "error $(field error), expected -112 (EHOSTDOWN)"; return 1; }
    [ "$(field elapsed_us)" -lt 200000 ] || { why "took $(field elapsed_us) us"; return 1; }
    [ "$(breaker_of 00000000000000b1)" = open ] || { why "breaker $(breaker_of 00000000000000b1)"; return 1; }
}
check "the hung instance's breaker opens: failing fast with EHOSTDOWN" fast_fail
kill -CONT $pid_b
echo 0 > $P/breaker_cooldown_ms
call ingest high 120000 "the probe after the breaker"
closed() {
    [ "$(field status)" = ok ] || { why "$(head -6 /tmp/call)"; return 1; }
    [ "$(breaker_of 00000000000000b1)" = closed ] || { why "breaker $(breaker_of 00000000000000b1)"; return 1; }
}
check "a successful probe closes the breaker" closed
echo 1000 > $P/breaker_cooldown_ms
echo 5 > $P/heartbeat_misses

# 6. Upgrade: a new instance registers, the old one unregisters; nothing is lost.
start_daemon c 00000000000000c1
check "instance c registers" wait_instances 2
flood 12 slow medium 60000 upgrade without loss
kill -TERM $pid_b
flood_wait
wait $pid_b
b_status=$?
upgrade() {
    [ "$(fl ok)" = 12 ] || { why "$(tr '\n' ' ' < /tmp/flood)"; return 1; }
    [ "$b_status" = 0 ] || { why "the old instance exited with $b_status: $(tail -3 /tmp/b.log)"; return 1; }
}
check "upgrade: the old instance drains, all 12 requests answered ok" upgrade
check "the old instance left" wait_instances 1

# 7. Version mismatch: refused with EPROTO, and said so.
$SPINDLE netlink-peer --bridge /e2e/noop.lua --transport genl --protocol-version 2 > /tmp/v.log 2>&1
v_status=$?
mismatch() {
    [ "$v_status" != 0 ] || { why "a version-2 daemon was accepted"; return 1; }
    grep -q "refused protocol version 2" /tmp/v.log || { why "$(tail -3 /tmp/v.log)"; return 1; }
}
check "version mismatch: registration refused (EPROTO)" mismatch

# 8. Unprivileged registration refused.
echo "daemon:x:1000:1000::/tmp:/bin/sh" >> /etc/passwd
echo "daemon:x:1000:" >> /etc/group
su -s /bin/sh daemon -c "XDG_CACHE_HOME=/tmp $SPINDLE netlink-peer --bridge /e2e/noop.lua --transport genl" > /tmp/u.log 2>&1
u_status=$?
unprivileged() {
    [ "$u_status" != 0 ] || { why "an unprivileged daemon registered"; return 1; }
    grep -q "CAP_NET_ADMIN" /tmp/u.log || { why "$(tail -3 /tmp/u.log)"; return 1; }
}
check "unprivileged registration refused (CAP_NET_ADMIN)" unprivileged
check "still one instance" [ "$(stat instances)" = 1 ]

# 9. A flood beyond the in-flight cap: busy answers, nothing lost.
echo 8 > $P/queue_cap
echo 2 > $P/high_reserve
flood 100 slow low 60000 flood beyond the cap
flood_wait
flooded() {
    [ "$(fl pending)" = 0 ] || { why "pending $(fl pending)"; return 1; }
    [ "$(fl refused_busy)" -gt 0 ] || { why "no busy answers: $(tr '\n' ' ' < /tmp/flood)"; return 1; }
    [ "$(fl ok)" = "$(fl accepted)" ] || { why "accepted $(fl accepted), ok $(fl ok)"; return 1; }
    [ $(( $(fl accepted) + $(fl refused_busy) )) = 100 ] || { why "$(tr '\n' ' ' < /tmp/flood)"; return 1; }
    echo "accepted $(fl accepted), busy $(fl refused_busy)"
}
check "a flood beyond the cap gets busy answers and loses nothing" flooded
echo 1024 > $P/queue_cap
echo 64 > $P/high_reserve

# 10. Per-sender rate limit: a burst of 2, then EAGAIN.
limited_before=$(stat rate_limited)
echo 1 > $P/rate_limit
echo 2 > $P/rate_burst
flood 10 ingest high 60000 A high priority request embeds this sentence.
flood_wait
echo 100000 > $P/rate_limit
echo 10000 > $P/rate_burst
rate_limited() {
    [ "$(fl accepted)" -le 3 ] || { why "accepted $(fl accepted) of 10 with a burst of 2"; return 1; }
    [ $(( $(stat rate_limited) - limited_before )) -ge 7 ] || { why "rate_limited went from $limited_before to $(stat rate_limited)"; return 1; }
    [ "$(fl ok)" = "$(fl accepted)" ] || { why "$(tr '\n' ' ' < /tmp/flood)"; return 1; }
}
check "a sender over its rate limit is refused with EAGAIN" rate_limited

# 11. The module reloads: the daemon registers again by itself.
rmmod spindle_netlink || fail "unload with a daemon registered" "rmmod failed"
insmod /e2e/spindle_netlink.ko
check "after a module reload the daemon registers again" wait_instances 1
call ingest high 120000 "after the reload"
check "and answers" [ "$(field status)" = ok ]
check "the module's counters balance" [ "$(stat balance)" = 0 ]
check "no malformed message crossed the boundary" [ "$(stat malformed)" = 0 ]
cat $D/stats | tr '\n' ' '; echo

kill -TERM $pid_c
wait $pid_c
check "the module unloads" rmmod spindle_netlink
echo "kmod-e2e: $passed passed, $failed failed"
[ "$failed" = 0 ]
