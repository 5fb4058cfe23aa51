#!/usr/bin/env python3
"""Test helpers for vipctl's cloud delivery, run inside lab namespaces only.

  imds LISTEN ENI MAC REGION      a FAKE instance metadata service (IMDSv2 only: a token is
                                  required), not AWS's: it answers the paths vipctl reads.
  aws-setup ENDPOINT N            on moto (an emulator of EC2's wire protocol): a VPC, a subnet,
                                  N ENIs and a route table; prints their ids as JSON.
  aws-enis ENDPOINT VIP           the ENIs moto lists with VIP as a private IP (boto3,
                                  describe_network_interfaces, every ENI read), one per line.
  aws-unassign ENDPOINT ENI IP    removes IP from ENI on moto (boto3), to repair what moto did
                                  with a DryRun it does not honour.
  aws-route ENDPOINT RTB VIP      the target of VIP/32 in route table RTB (boto3,
                                  describe_route_tables), or "-".
  bench-watch ENDPOINT RTB VIP ENIS REDIS... (scripts/bench/cloud.sh) polls each REDIS
                                  (IP:PORT) with ROLE every 2 ms until one is a master, then
                                  the route table (boto3) until VIP/32 names one of their ENIs
                                  (ENIS: JSON, host IP to ENI id); prints both moments.
  hetzner-metadata LISTEN ID      a FAKE of Hetzner's server metadata (instance-id only).
  hetzner-api LISTEN TOKEN VIP    a FAKE of the Hetzner Cloud API, not Hetzner's: Hetzner has no
                                  emulator. It follows the published API for what vipctl calls
                                  (docs.hetzner.cloud): floating IP 4711 (address VIP) with its
                                  assign action and the 422 floating_ip_assigned error, servers
                                  101-103 in network 7 with change_alias_ips (which replaces a
                                  server's whole list; an alias another server holds is a 422
                                  ip_not_available), actions followed at /actions/{id}, bearer
                                  tokens (401 unauthorized), error bodies {"error": {"code",
                                  "message"}} and an X-Correlation-Id on every answer. For the
                                  tests, GET /_fake/state shows everything and POST
                                  /_fake/stale-reads?n=N makes the next N floating IP reads
                                  name no server (a lagging read).
  gcp-metadata LISTEN NAME ZONE TOKEN
                                  a FAKE of GCE's metadata server: instance/name, instance/zone,
                                  project/project-id (vipctl-lab) and the default service
                                  account's token TOKEN, only with Metadata-Flavor: Google (403
                                  otherwise, as GCE answers).
  gcp-api LISTEN TOKEN VIP [PUBKEY]
                                  a FAKE of the Compute Engine API, not Google's: GCP has no
                                  emulator. It follows the published v1 API for what vipctl calls
                                  (cloud.google.com/compute/docs/reference/rest/v1): instances
                                  h1, h2 (zone europe-west1-b) and h3 (europe-west1-c) of
                                  project vipctl-lab, each with nic0 in subnetwork "lab", h1 and
                                  h2 with alias ranges of their own already (one from a
                                  secondary range, subnetworkRangeName "pods"); and instance
                                  "other" in another VPC's subnetwork that uses VIP/32 too
                                  (addresses are unique per VPC, not per project).
                                  instances.get, instances.aggregatedList (two instances a
                                  page, whatever maxResults asks: the API may return fewer),
                                  instances.testIamPermissions and
                                  instances.updateNetworkInterface, which needs the interface's
                                  current fingerprint (else 412 conditionNotMet) and replaces
                                  the whole aliasIpRanges list; it answers a zone operation that
                                  is RUNNING and applies the change when the operation turns
                                  DONE 300 ms later (zoneOperations.get). Bearer tokens (401
                                  authError, Google's error body). Simplified, not Google's: a
                                  range another interface of the same subnetwork holds, or one a
                                  running operation is adding, is a 400 with wording of its own;
                                  operations never fail; every compute.* permission is granted
                                  unless denied; only nic0; no zone warnings in the aggregated
                                  list. With PUBKEY (a PEM file),
                                  POST /token is an OAuth token endpoint for service-account
                                  JWTs, whose RS256 signature it checks. For the tests: GET
                                  /_fake/state, POST /_fake/stale-fingerprints?n=N (the next N
                                  updateNetworkInterface calls find the fingerprint changed just
                                  before them, as another client's change would do), POST
                                  /_fake/deny?permission=P (testIamPermissions no longer
                                  grants P).
"""
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Quiet(BaseHTTPRequestHandler):
    """A handler that logs nothing and answers with a body and its length."""

    def log_message(self, *a):
        pass

    def send(self, code, body, **headers):
        b = body if isinstance(body, bytes) else body.encode()
        self.send_response(code)
        for k, v in headers.items():
            self.send_header(k.replace("_", "-"), v)
        self.send_header("Content-Length", str(len(b)))
        self.end_headers()
        self.wfile.write(b)

    def do_GET(self):
        self.handle_any("GET")

    def do_POST(self):
        self.handle_any("POST")

    def do_PUT(self):
        self.handle_any("PUT")

    def do_PATCH(self):
        self.handle_any("PATCH")

    def handle_any(self, method):
        self.send(405, "")


def serve(listen, handler):
    host, port = listen.rsplit(":", 1)
    ThreadingHTTPServer((host, int(port)), handler).serve_forever()


def imds(listen, eni, mac, region):
    token = "fake-imds-token"
    paths = {
        "/latest/meta-data/mac": mac,
        f"/latest/meta-data/network/interfaces/macs/{mac}/interface-id": eni,
        "/latest/meta-data/placement/region": region,
        "/latest/meta-data/iam/security-credentials/": "vipctl-lab-role",
        "/latest/meta-data/iam/security-credentials/vipctl-lab-role": json.dumps({
            "Code": "Success", "AccessKeyId": "AKIDLABFAKE", "SecretAccessKey": "lab-fake-secret",
            "Token": "lab-fake-session", "Expiration": "2099-01-01T00:00:00Z"}),
    }

    class H(Quiet):
        def handle_any(self, method):
            if method == "PUT":
                ok = self.path == "/latest/api/token" and self.headers.get("X-aws-ec2-metadata-token-ttl-seconds")
                return self.send(200, token) if ok else self.send(400, "")
            if self.headers.get("X-aws-ec2-metadata-token") != token:
                return self.send(401, "")
            body = paths.get(self.path)
            self.send(200, body) if body is not None else self.send(404, "")

    serve(listen, H)


def hetzner_metadata(listen, server_id):
    class H(Quiet):
        def handle_any(self, method):
            ok = self.path == "/hetzner/v1/metadata/instance-id"
            self.send(200 if ok else 404, server_id if ok else "not found")

    serve(listen, H)


def hetzner_api(listen, token, vip):
    import threading
    import time
    lock = threading.Lock()
    net = 7
    st = {
        "floating": {"id": 4711, "ip": vip, "server": None},
        "servers": {sid: {"ip": f"203.0.113.{sid - 90}", "alias_ips": []} for sid in (101, 102, 103)},
        "actions": {},
        "log": [],
        "stale_reads": 0,
        "next": 1,
    }

    def server_json(sid):
        s = st["servers"][sid]
        return {"id": sid, "name": f"h{sid - 100}", "status": "running",
                "private_net": [{"network": net, "ip": s["ip"], "alias_ips": list(s["alias_ips"]),
                                 "mac_address": f"86:00:00:00:00:{sid - 100:02x}"}]}

    def action(command, resources):
        aid = st["next"]
        st["next"] += 1
        st["actions"][aid] = {"id": aid, "command": command, "status": "running", "progress": 0,
                              "started": time.strftime("%Y-%m-%dT%H:%M:%S+00:00"), "finished": None,
                              "resources": resources, "error": None}
        return {"action": dict(st["actions"][aid])}

    class H(Quiet):
        def reply(self, code, obj):
            self.send(code, json.dumps(obj), Content_Type="application/json",
                      X_Correlation_Id=f"fake-{time.monotonic_ns():x}")

        def error(self, code, err, message):
            st["log"].append({"t": time.time(), "call": self.path, "error": err})
            self.reply(code, {"error": {"code": err, "message": message, "details": {}}})

        def body(self):
            n = int(self.headers.get("Content-Length") or 0)
            try:
                return json.loads(self.rfile.read(n) or b"{}")
            except ValueError:
                return None

        def handle_any(self, method):
            path, _, query = self.path.partition("?")
            with lock:
                if path == "/_fake/state":
                    return self.reply(200, st)
                if path == "/_fake/stale-reads":
                    st["stale_reads"] = int(query.split("=")[1])
                    return self.reply(200, {})
                if self.headers.get("Authorization") != f"Bearer {token}":
                    return self.error(401, "unauthorized", "unable to authenticate")
                body = self.body() if method == "POST" else {}
                if body is None:
                    return self.error(400, "json_error", "invalid JSON")
                parts = path.strip("/").split("/")
                if parts[:1] != ["v1"]:
                    return self.error(404, "not_found", "not found")
                parts = parts[1:]
                f = st["floating"]
                if method == "GET" and parts == ["floating_ips", str(f["id"])]:
                    shown = dict(f)
                    if st["stale_reads"] > 0:
                        st["stale_reads"] -= 1
                        shown["server"] = None
                    return self.reply(200, {"floating_ip": shown})
                if method == "POST" and parts == ["floating_ips", str(f["id"]), "actions", "assign"]:
                    sid = body.get("server")
                    if sid not in st["servers"]:
                        return self.error(422, "invalid_input", "invalid input in field 'server'")
                    if f["server"] == sid:
                        return self.error(422, "floating_ip_assigned", "floating IP is already assigned to this server")
                    f["server"] = sid
                    st["log"].append({"t": time.time(), "call": "assign", "server": sid})
                    return self.reply(201, action("assign_floating_ip", [{"id": f["id"], "type": "floating_ip"}, {"id": sid, "type": "server"}]))
                if method == "GET" and parts == ["servers"]:
                    ids = sorted(st["servers"])
                    return self.reply(200, {"servers": [server_json(s) for s in ids],
                                            "meta": {"pagination": {"page": 1, "per_page": 50, "previous_page": None,
                                                                    "next_page": None, "last_page": 1,
                                                                    "total_entries": len(ids)}}})
                if method == "GET" and len(parts) == 2 and parts[0] == "servers" and parts[1].isdigit() and int(parts[1]) in st["servers"]:
                    return self.reply(200, {"server": server_json(int(parts[1]))})
                if method == "POST" and len(parts) == 4 and parts[0] == "servers" and parts[2:] == ["actions", "change_alias_ips"]:
                    sid = int(parts[1]) if parts[1].isdigit() else None
                    if sid not in st["servers"]:
                        return self.error(404, "not_found", "server not found")
                    if body.get("network") != net:
                        return self.error(422, "server_not_attached_to_network", "server is not attached to this network")
                    want = body.get("alias_ips")
                    if not isinstance(want, list):
                        return self.error(422, "invalid_input", "invalid input in field 'alias_ips'")
                    for other, s in st["servers"].items():
                        if other != sid and set(want) & set(s["alias_ips"]):
                            return self.error(422, "ip_not_available", "the IP is not available")
                    st["servers"][sid]["alias_ips"] = list(want)
                    st["log"].append({"t": time.time(), "call": "change_alias_ips", "server": sid, "alias_ips": want})
                    return self.reply(201, action("change_alias_ips", [{"id": sid, "type": "server"}]))
                if method == "GET" and len(parts) == 2 and parts[0] == "actions" and parts[1].isdigit():
                    a = st["actions"].get(int(parts[1]))
                    if a is None:
                        return self.error(404, "not_found", "action not found")
                    a.update(status="success", progress=100, finished=time.strftime("%Y-%m-%dT%H:%M:%S+00:00"))
                    return self.reply(200, {"action": a})
                return self.error(404, "not_found", "not found")

    serve(listen, H)


def gcp_metadata(listen, name, zone, token):
    paths = {
        "/computeMetadata/v1/instance/name": name,
        "/computeMetadata/v1/instance/zone": f"projects/123456789012/zones/{zone}",
        "/computeMetadata/v1/project/project-id": "vipctl-lab",
        "/computeMetadata/v1/instance/service-accounts/default/token":
            json.dumps({"access_token": token, "expires_in": 3599, "token_type": "Bearer"}),
    }

    class H(Quiet):
        def handle_any(self, method):
            if self.headers.get("Metadata-Flavor") != "Google":
                code, body = 403, "Missing Metadata-Flavor:Google header."
            else:
                body = paths.get(self.path)
                code, body = (200, body) if body is not None else (404, "not found")
            self.send(code, body, Metadata_Flavor="Google")

    serve(listen, H)


def gcp_api(listen, token, vip, pubkey=None):
    import base64
    import os
    import threading
    import time
    from urllib.parse import parse_qs, urlparse
    lock = threading.Lock()
    project = "vipctl-lab"
    base = f"http://{listen}/compute/v1"
    zones = {"h1": "europe-west1-b", "h2": "europe-west1-b", "h3": "europe-west1-c", "other": "europe-west1-b"}
    regional = f"{base}/projects/{project}/regions/europe-west1/subnetworks"
    st = {
        "instances": {n: {"zone": z, "aliasIpRanges": [], "fingerprint": "", "ip": f"198.51.100.{11 + i}",
                          "subnetwork": f"{regional}/lab"}
                      for i, (n, z) in enumerate(zones.items())},
        "operations": {},
        "tokens": [token],
        "log": [],
        "stale": 0,
        "denied": [],
    }

    def new_fingerprint(inst):
        inst["fingerprint"] = base64.b64encode(os.urandom(8)).decode()

    for inst in st["instances"].values():
        new_fingerprint(inst)
    # Ranges of their own that a move must leave alone, and another VPC's use of the address.
    st["instances"]["h1"]["aliasIpRanges"] = [{"ipCidrRange": "198.51.100.208/28"},
                                              {"ipCidrRange": "203.0.113.7/32", "subnetworkRangeName": "pods"}]
    st["instances"]["h2"]["aliasIpRanges"] = [{"ipCidrRange": "198.51.100.224/28"}]
    st["instances"]["other"].update(subnetwork=f"{regional}/elsewhere", ip="203.0.113.50",
                                    aliasIpRanges=[{"ipCidrRange": f"{vip}/32"}])

    def instance_json(name):
        i = st["instances"][name]
        zone_url = f"{base}/projects/{project}/zones/{i['zone']}"
        return {"kind": "compute#instance", "id": str(abs(hash(name)) % 10**12), "name": name,
                "zone": zone_url, "status": "RUNNING", "selfLink": f"{zone_url}/instances/{name}",
                "networkInterfaces": [{"kind": "compute#networkInterface", "name": "nic0",
                                       "network": f"{base}/projects/{project}/global/networks/"
                                                  + i["subnetwork"].rsplit("/", 1)[1],
                                       "subnetwork": i["subnetwork"],
                                       "networkIP": i["ip"], "fingerprint": i["fingerprint"],
                                       "aliasIpRanges": [dict(r) for r in i["aliasIpRanges"]]}]}

    def finish(op_name):
        with lock:
            op = st["operations"][op_name]
            i = st["instances"][op["_instance"]]
            i["aliasIpRanges"] = op["_ranges"]
            new_fingerprint(i)
            op.update(status="DONE", progress=100, endTime=time.strftime("%Y-%m-%dT%H:%M:%S.000-00:00"))
            st["log"].append({"t": time.time(), "call": "done", "instance": op["_instance"],
                              "aliasIpRanges": [r["ipCidrRange"] for r in op["_ranges"]]})

    def shown(op):
        return {k: v for k, v in op.items() if not k.startswith("_")}

    def verify_jwt(assertion):
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import padding
        with open(pubkey, "rb") as f:
            key = serialization.load_pem_public_key(f.read())
        head, claims, sig = assertion.split(".")
        pad = lambda s: base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))
        key.verify(pad(sig), f"{head}.{claims}".encode(), padding.PKCS1v15(), hashes.SHA256())
        c = json.loads(pad(claims))
        if json.loads(pad(head)).get("alg") != "RS256" or "auth/compute" not in c.get("scope", ""):
            raise ValueError("wrong alg or scope")
        if not c["iat"] - 300 <= time.time() <= c["exp"]:
            raise ValueError("expired")
        return c

    class H(Quiet):
        def reply(self, code, obj):
            self.send(code, json.dumps(obj), Content_Type="application/json; charset=UTF-8")

        def error(self, code, reason, message, status):
            st["log"].append({"t": time.time(), "call": self.path, "error": reason})
            self.reply(code, {"error": {"code": code, "message": message,
                                        "errors": [{"message": message, "domain": "global", "reason": reason}],
                                        "status": status}})

        def body(self):
            n = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(n) if n else b""
            return raw

        def handle_any(self, method):
            u = urlparse(self.path)
            q = {k: v[0] for k, v in parse_qs(u.query).items()}
            raw = self.body()
            with lock:
                if u.path == "/_fake/state":
                    return self.reply(200, {k: v for k, v in st.items() if k != "operations"})
                if u.path == "/_fake/deny":
                    st["denied"].append(q["permission"])
                    return self.reply(200, {})
                if u.path == "/_fake/stale-fingerprints":
                    st["stale"] = int(q["n"])
                    return self.reply(200, {})
                if u.path == "/token" and method == "POST" and pubkey:
                    form = {k: v[0] for k, v in parse_qs(raw.decode()).items()}
                    try:
                        assert form.get("grant_type") == "urn:ietf:params:oauth:grant-type:jwt-bearer"
                        c = verify_jwt(form.get("assertion", ""))
                    except Exception as e:
                        st["log"].append({"t": time.time(), "call": "token", "error": f"invalid_grant: {e}"})
                        return self.reply(400, {"error": "invalid_grant", "error_description": "Invalid JWT Signature."})
                    t = f"lab-fake-sa-token-{len(st['tokens'])}"
                    st["tokens"].append(t)
                    st["log"].append({"t": time.time(), "call": "token", "iss": c["iss"]})
                    return self.reply(200, {"access_token": t, "expires_in": 3599, "token_type": "Bearer"})
                auth = self.headers.get("Authorization", "")
                if not auth.startswith("Bearer ") or auth[7:] not in st["tokens"]:
                    return self.error(401, "authError", "Request had invalid authentication credentials. "
                                      "Expected OAuth 2 access token, login cookie or other valid authentication "
                                      "credential.", "UNAUTHENTICATED")
                parts = u.path.strip("/").split("/")
                if parts[:4] != ["compute", "v1", "projects", project]:
                    return self.error(404, "notFound", f"The resource '{u.path}' was not found", "NOT_FOUND")
                parts = parts[4:]
                if method == "GET" and parts == ["aggregated", "instances"]:
                    names = sorted(st["instances"])
                    at = int(q.get("pageToken", "0"))
                    items = {}
                    for n in names[at:at + 2]:
                        i = st["instances"][n]
                        items.setdefault(f"zones/{i['zone']}", {"instances": []})["instances"].append(instance_json(n))
                    page = {"kind": "compute#instanceAggregatedList", "items": items}
                    if at + 2 < len(names):
                        page["nextPageToken"] = str(at + 2)
                    return self.reply(200, page)
                if len(parts) < 4 or parts[0] != "zones" or parts[2] not in ("instances", "operations"):
                    return self.error(404, "notFound", f"The resource '{u.path}' was not found", "NOT_FOUND")
                zone, kind, name, rest = parts[1], parts[2], parts[3], parts[4:]
                if kind == "operations":
                    op = st["operations"].get(name)
                    if method != "GET" or rest or op is None or op["zone"].rsplit("/", 1)[1] != zone:
                        return self.error(404, "notFound", f"The resource '{u.path}' was not found", "NOT_FOUND")
                    return self.reply(200, shown(op))
                inst = st["instances"].get(name)
                if inst is None or inst["zone"] != zone:
                    return self.error(404, "notFound", f"The resource 'projects/{project}/zones/{zone}/instances/{name}' was not found", "NOT_FOUND")
                if method == "GET" and not rest:
                    return self.reply(200, instance_json(name))
                if method == "POST" and rest == ["testIamPermissions"]:
                    asked = json.loads(raw or b"{}").get("permissions", [])
                    granted = [p for p in asked if p.startswith("compute.") and p not in st["denied"]]
                    return self.reply(200, {"permissions": granted})
                if method == "PATCH" and rest == ["updateNetworkInterface"]:
                    if q.get("networkInterface") != "nic0":
                        return self.error(400, "invalid", "Invalid value for field 'networkInterface'", "INVALID_ARGUMENT")
                    try:
                        b = json.loads(raw)
                    except ValueError:
                        return self.error(400, "parseError", "Parse Error", "INVALID_ARGUMENT")
                    if st["stale"] > 0:
                        st["stale"] -= 1
                        new_fingerprint(inst)
                    if b.get("fingerprint") != inst["fingerprint"]:
                        return self.error(412, "conditionNotMet",
                                          "Supplied fingerprint does not match current metadata fingerprint.",
                                          "FAILED_PRECONDITION")
                    want = b.get("aliasIpRanges", [])
                    mine = {r["ipCidrRange"] for r in want}
                    busy = set()
                    for other, i in st["instances"].items():
                        if other != name and i["subnetwork"] == inst["subnetwork"]:
                            busy |= {r["ipCidrRange"] for r in i["aliasIpRanges"]}
                    for op in st["operations"].values():
                        same = st["instances"][op["_instance"]]["subnetwork"] == inst["subnetwork"]
                        if op["status"] != "DONE" and op["_instance"] != name and same:
                            busy |= {r["ipCidrRange"] for r in op["_ranges"]}
                    if mine & busy:
                        return self.error(400, "badRequest",
                                          f"IP range {sorted(mine & busy)[0]} is in use by another instance's alias IP ranges.",
                                          "INVALID_ARGUMENT")
                    op_name = f"operation-{int(time.time() * 1000)}-{os.urandom(4).hex()}"
                    zone_url = f"{base}/projects/{project}/zones/{zone}"
                    st["operations"][op_name] = {
                        "kind": "compute#operation", "id": str(int.from_bytes(os.urandom(6), "big")),
                        "name": op_name, "zone": zone_url, "operationType": "updateNetworkInterface",
                        "targetLink": f"{zone_url}/instances/{name}", "status": "RUNNING", "progress": 0,
                        "selfLink": f"{zone_url}/operations/{op_name}", "_instance": name,
                        "_ranges": [{k: r[k] for k in ("ipCidrRange", "subnetworkRangeName") if k in r}
                                    for r in want]}
                    st["log"].append({"t": time.time(), "call": "updateNetworkInterface", "instance": name,
                                      "aliasIpRanges": sorted(mine)})
                    threading.Timer(0.3, finish, (op_name,)).start()
                    return self.reply(200, shown(st["operations"][op_name]))
                return self.error(404, "notFound", f"The resource '{u.path}' was not found", "NOT_FOUND")

    serve(listen, H)


def role_is_master(addr):
    import socket
    host, port = addr.rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=0.2) as c:
            c.sendall(b"ROLE\r\n")
            return c.recv(64).startswith(b"*3\r\n$6\r\nmaster")
    except OSError:
        return False


def bench_watch(endpoint, rtb, vip, enis, *redis):
    import time
    enis = json.loads(enis)
    c = ec2(endpoint)
    deadline = time.monotonic() + 60
    master = None
    while master is None and time.monotonic() < deadline:
        master = next((r for r in redis if role_is_master(r)), None)
        if master is None:
            time.sleep(0.002)
    if master is None:
        sys.exit("no replica became a master within 60 s")
    promoted = time.time()
    # Any of the replicas' ENIs: Sentinel may fail over a second time to the other replica
    # (a sentinel that lost the first vote tries again), and the route then follows that one.
    want = {enis[r.rsplit(":", 1)[0]]: r for r in redis}
    while time.monotonic() < deadline:
        routes = c.describe_route_tables(RouteTableIds=[rtb])["RouteTables"][0]["Routes"]
        held = [r.get("NetworkInterfaceId") for r in routes if r.get("DestinationCidrBlock") == vip + "/32"]
        if held and held[0] in want:
            done = time.time()
            print(json.dumps({"master": master, "route_names": want[held[0]], "role_master": promoted,
                              "route": done, "ms": round((done - promoted) * 1000, 1)}))
            return
        time.sleep(0.002)
    sys.exit(f"the route did not name any of {sorted(want)} within 60 s of {master}'s role:master")


def ec2(endpoint):
    import boto3
    return boto3.client("ec2", endpoint_url=endpoint, region_name="us-east-1",
                        aws_access_key_id="AKIDLABFAKE", aws_secret_access_key="lab-fake-secret")


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "imds":
        imds(*args)
    elif cmd == "bench-watch":
        bench_watch(*args)
    elif cmd == "hetzner-metadata":
        hetzner_metadata(*args)
    elif cmd == "hetzner-api":
        hetzner_api(*args)
    elif cmd == "gcp-metadata":
        gcp_metadata(*args)
    elif cmd == "gcp-api":
        gcp_api(*args)
    elif cmd == "gcp-key":
        # A service-account key for the fake (cryptography, which moto already needs): the key
        # file's JSON on stdout, the public key to PUBKEY.
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa
        k = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()).decode()
        with open(args[0], "wb") as f:
            f.write(k.public_key().public_bytes(serialization.Encoding.PEM,
                                                serialization.PublicFormat.SubjectPublicKeyInfo))
        print(json.dumps({"type": "service_account", "project_id": "vipctl-lab", "private_key_id": "fake",
                          "private_key": pem, "client_email": "vipctl@vipctl-lab.iam.gserviceaccount.com",
                          "token_uri": args[1]}))
    elif cmd == "aws-setup":
        c = ec2(args[0])
        vpc = c.create_vpc(CidrBlock="198.51.100.0/24")["Vpc"]["VpcId"]
        sub = c.create_subnet(VpcId=vpc, CidrBlock="198.51.100.0/24")["Subnet"]["SubnetId"]
        enis = [c.create_network_interface(SubnetId=sub, PrivateIpAddress=f"198.51.100.{11 + i}")
                ["NetworkInterface"]["NetworkInterfaceId"] for i in range(int(args[1]))]
        rtb = c.create_route_table(VpcId=vpc)["RouteTable"]["RouteTableId"]
        print(json.dumps({"vpc": vpc, "subnet": sub, "enis": enis, "route_table": rtb}))
    elif cmd == "aws-enis":
        c = ec2(args[0])
        # Every ENI, read whole: moto's addresses.private-ip-address filter sees primaries only.
        for n in c.describe_network_interfaces()["NetworkInterfaces"]:
            if any(a["PrivateIpAddress"] == args[1] for a in n.get("PrivateIpAddresses", [])):
                print(n["NetworkInterfaceId"])
    elif cmd == "aws-unassign":
        c = ec2(args[0])
        c.unassign_private_ip_addresses(NetworkInterfaceId=args[1], PrivateIpAddresses=[args[2]])
    elif cmd == "aws-route":
        c = ec2(args[0])
        r = c.describe_route_tables(RouteTableIds=[args[1]])
        t = [x.get("NetworkInterfaceId", "-") for x in r["RouteTables"][0]["Routes"]
             if x.get("DestinationCidrBlock") == args[2] + "/32"]
        print(t[0] if t else "-")
    else:
        sys.exit(f"unknown command {cmd}")


if __name__ == "__main__":
    main()
