#!/usr/bin/env bash
# The time from a replica's `role:master` to the provider's state naming its host, in the lab
# against moto (an emulator of EC2's wire protocol): vipctl watch with `[masters.NAME.cloud]`
# (AWS route table mode) against the baseline an operator writes today, vipctl watch with an
# `on_claim` notify command that reads the instance metadata with curl and runs the AWS CLI's
# `ec2 replace-route`. A report; asserts nothing. Side by side in one run, N kills each.
#
#   scripts/bench/cloud.sh [N]        N failovers per setup (default 5)
#
# Run as root (the lab builds network namespaces). Installs the AWS CLI (PyPI awscli, pinned) in
# its own venv under /var/cache/vipctl-lab. CLOUD_OUT keeps the raw results (default a temp dir).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
n=${1:-5}
[[ $n =~ ^[1-9][0-9]*$ ]] || { echo "cloud.sh: N must be a positive number" >&2; exit 2; }
[[ $(id -u) -eq 0 ]] || { echo "cloud.sh: run as root (the lab builds network namespaces)" >&2; exit 2; }
scripts/install-deps.sh >/dev/null
py=/var/cache/vipctl-lab/py/bin/python3
cli_venv=/var/cache/vipctl-lab/awscli
AWSCLI_VERSION=1.46.3
if ! "$cli_venv/bin/aws" --version 2>&1 | grep -q "aws-cli/$AWSCLI_VERSION"; then
    python3 -m venv "$cli_venv"
    "$cli_venv/bin/pip" install --quiet "awscli==$AWSCLI_VERSION"
fi
cargo build --release --locked --quiet
bin=$PWD/target/release/vipctl
fake=$PWD/tests/support/cloud_fake.py
out=${CLOUD_OUT:-$(mktemp -d /tmp/vipctl-bench-cloud.XXXXXX)}
mkdir -p "$out"
lab=$(mktemp -d /tmp/vipctl-cloud-lab.XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    scripts/lab.sh down "$lab" >/dev/null 2>&1 || true
    rm -rf -- "$lab"
}
# A reaped child's PID may be reused: cleanup must not kill it again.
forget() {
    local p keep=()
    for p in "${pids[@]}"; do [[ $p == "$1" ]] || keep+=("$p"); done
    pids=("${keep[@]}")
}
# An interrupt ends the script (the EXIT trap cleans up once); it must not carry on.
trap cleanup EXIT
trap 'exit 130' INT TERM
scripts/lab.sh up "$lab" >"$out/lab-up.log" 2>&1
fact() { "$py" -c "import json,sys; d=json.load(open('$lab/lab.json')); print($1)"; }
cl_ip=$(fact 'd["nodes"]["cl"]["ipv4"]')
vip=$(fact 'd["vips"]["v4"].split("/")[0]')
m=$(fact 'd["master_name"]')
rport=$(fact 'd["ports"]["redis"]')
endpoint="http://$cl_ip:5000"
ns() { scripts/lab.sh ns "$lab" "$1"; }

ip netns exec "$(ns cl)" "${py%/*}/moto_server" -H "$cl_ip" -p 5000 >"$out/moto.log" 2>&1 &
pids+=($!)
setup=
for _ in $(seq 100); do
    setup=$(ip netns exec "$(ns cl)" "$py" "$fake" aws-setup "$endpoint" 3 2>/dev/null) && break
    sleep 0.2
done
[[ -n $setup ]] || { echo "cloud.sh: moto did not answer (see $out/moto.log)" >&2; exit 1; }
rtb=$(echo "$setup" | "$py" -c 'import json,sys; print(json.load(sys.stdin)["route_table"])')
enis_by_ip=$(echo "$setup" | "$py" -c 'import json,sys; e=json.load(sys.stdin)["enis"]; print(json.dumps({f"198.51.100.{11+i}": x for i, x in enumerate(e)}))')
for i in 1 2 3; do
    eni=$(echo "$setup" | "$py" -c "import json,sys; print(json.load(sys.stdin)['enis'][$((i - 1))])")
    mac=$(fact "d['nodes']['h$i']['mac']")
    ip netns exec "$(ns "h$i")" "$py" "$fake" imds 127.0.0.1:1338 "$eni" "$mac" us-east-1 &
    pids+=($!)
done
sentinels=$(fact '", ".join(chr(34) + d["nodes"][h]["ipv4"] + ":" + str(d["ports"]["sentinel"]) + chr(34) for h in d["redis_hosts"])')

# The baseline's notify command: what an operator's script does with the AWS CLI.
notify=$lab/aws-replace-route.sh
cat >"$notify" <<EOF
#!/bin/sh
# on_claim: point $vip/32 at this instance's ENI (IMDSv2, then the AWS CLI).
set -e
md=http://127.0.0.1:1338/latest
t=\$(curl -sf -m 2 -X PUT -H 'X-aws-ec2-metadata-token-ttl-seconds: 60' \$md/api/token)
mac=\$(curl -sf -m 2 -H "X-aws-ec2-metadata-token: \$t" \$md/meta-data/mac)
eni=\$(curl -sf -m 2 -H "X-aws-ec2-metadata-token: \$t" \$md/meta-data/network/interfaces/macs/\$mac/interface-id)
export AWS_EC2_METADATA_SERVICE_ENDPOINT=http://127.0.0.1:1338 AWS_DEFAULT_REGION=us-east-1 HOME=/tmp
exec $cli_venv/bin/aws --endpoint-url $endpoint ec2 replace-route --route-table-id $rtb \\
    --destination-cidr-block $vip/32 --network-interface-id "\$eni"
EOF
chmod 755 "$notify"

config() {
    local f=$lab/$1.toml
    printf 'sentinels = [%s]\n\n[masters.%s]\nvips = ["%s/32"]\ninterface = "eth0"\n' "$sentinels" "$m" "$vip" >"$f"
    case $1 in
        vipctl) printf '\n[masters.%s.cloud]\nprovider = "aws"\nendpoint = "%s"\nmetadata_endpoint = "http://127.0.0.1:1338"\nroute_tables = ["%s"]\n' "$m" "$endpoint" "$rtb" >>"$f" ;;
        notify) printf 'on_claim = ["%s"]\nnotify_timeout_ms = 30000\n' "$notify" >>"$f" ;;
    esac
    echo "$f"
}

host_of_ip() {
    case $1 in 198.51.100.11) echo h1 ;; 198.51.100.12) echo h2 ;; 198.51.100.13) echo h3 ;; *) echo "" ;; esac
}

# The master every sentinel names, or nothing while they disagree.
master_host() {
    local a b c
    a=$(scripts/lab.sh master "$lab" h1 2>/dev/null | awk '{print $1; exit}') || true
    b=$(scripts/lab.sh master "$lab" h2 2>/dev/null | awk '{print $1; exit}') || true
    c=$(scripts/lab.sh master "$lab" h3 2>/dev/null | awk '{print $1; exit}') || true
    if [[ -n $a && $a == "$b" && $b == "$c" ]]; then host_of_ip "$a"; fi
}

# Bounded: the sentinels agree for 2 s in a row and the route names that master's ENI, so a
# round starts from a settled state (Sentinel may fail over twice; the restarted old master
# must have rejoined as a replica).
settle() {
    local i m prev="" same=0 eni
    for i in $(seq 120); do
        m=$(master_host)
        if [[ -n $m && $m == "$prev" ]]; then same=$((same + 1)); else same=0; fi
        prev=$m
        if ((same >= 4)); then
            eni=$(echo "$enis_by_ip" | "$py" -c "import json,sys; print(json.load(sys.stdin)['$(fact "d['nodes']['$m']['ipv4']")'])")
            if [[ $(ip netns exec "$(ns cl)" "$py" "$fake" aws-route "$endpoint" "$rtb" "$vip") == "$eni" ]]; then
                return 0
            fi
        fi
        sleep 0.5
    done
    echo "cloud.sh: the sentinels and the route did not settle within 60 s" >&2
    exit 1
}

for s in vipctl notify; do
    cfg=$(config "$s")
    daemons=()
    for h in h1 h2 h3; do
        mkdir -p "$lab/$s/$h"
        VIPCTL_LOG_FILE=$lab/$s/$h/watch.log VIPCTL_SOCKET=$lab/$s/$h/vipctl.sock \
            ip netns exec "$(ns $h)" "$bin" --config "$cfg" watch >"$lab/$s/$h/watch.out" 2>&1 &
        daemons+=($!)
        pids+=($!)
    done
    for i in $(seq "$n"); do
        settle
        old=$(master_host)
        [[ -n $old ]] || { echo "cloud.sh: no master named by the sentinels" >&2; exit 1; }
        replicas=()
        for h in h1 h2 h3; do [[ $h == "$old" ]] || replicas+=("$(fact "d['nodes']['$h']['ipv4']"):$rport"); done
        ip netns exec "$(ns cl)" "$py" "$fake" bench-watch "$endpoint" "$rtb" "$vip" "$enis_by_ip" "${replicas[@]}" \
            >"$out/$s-$i.json" 2>"$out/$s-$i.err" &
        w=$!
        pids+=($w)
        sleep 0.3
        scripts/lab.sh kill-redis "$lab" "$old" >/dev/null
        wait "$w" || { echo "cloud.sh: $s round $i: $(cat "$out/$s-$i.err")" >&2; exit 1; }
        forget "$w"
        echo "$s $i: $(cat "$out/$s-$i.json")"
        scripts/lab.sh start-redis "$lab" "$old" >/dev/null
        # Sentinel waits 2 x failover-timeout (5 s in the lab) before it fails the same master
        # over again; a kill sooner measures Sentinel's wait, not the mover.
        sleep 10
    done
    for d in "${daemons[@]}"; do
        kill "$d" 2>/dev/null || true
        wait "$d" 2>/dev/null || true
        forget "$d"
    done
    cp -r "$lab/$s" "$out/"
done

"$py" - "$out" "$n" <<'PY'
import json, statistics, sys
out, n = sys.argv[1], int(sys.argv[2])
rows = {}
for s in ("vipctl", "notify"):
    rows[s] = [json.load(open(f"{out}/{s}-{i}.json"))["ms"] for i in range(1, n + 1)]
print()
print("role:master -> moto's route table names the new master's ENI (ms), kill -9 of the master")
print(f"{'setup':<44} {'median':>8} {'min':>8} {'max':>8}  each run")
names = {"vipctl": "vipctl watch, [cloud] provider = aws (routes)",
         "notify": "vipctl watch, on_claim + curl + aws CLI"}
for s, v in rows.items():
    print(f"{names[s]:<44} {statistics.median(v):>8.1f} {min(v):>8.1f} {max(v):>8.1f}  {', '.join(f'{x:.0f}' for x in v)}")
PY
echo "raw results: $out"
