"""Tiny raw HTTP capture server (plain http, 127.0.0.1). Records exact request bytes.

Usage: python capture_server.py PORT OUTFILE.jsonl
Each request is answered with a canned JSON body (chosen by Action) and
Connection: close. Every request is appended to OUTFILE as one JSON line with
the raw request-line, raw header block (order and case preserved) and body.
"""
import json, socket, sys, urllib.parse

PORT = int(sys.argv[1]); OUT = sys.argv[2]

CANNED = {
    'ListRtcMPUTaskDetail': {
        "RequestId": "REQ-LIST-0001",
        "MPUTasks": [{
            "AppId": "demo-app", "ChannelId": "lobby", "TaskId": "lobby-relay-1",
            "MixMode": "1", "Region": "CN-Shanghai", "MaxIdleTime": "600",
            "StreamURL": "", "MultiStreamURL": [{"URL": "rtmp://a/x", "IsAliCdn": True}],
            "TranscodeParams": {"Layout": {"UserPanes": [{"X": "0.0", "Y": "0.0", "Width": "0.5", "Height": "1.0", "ZOrder": "0",
                                "UserInfo": {"UserId": "host-1", "SourceType": "camera"}}]},
                                "UserInfos": [{"UserId": "host-1", "StreamType": "0"}],
                                "EncodeParams": {"VideoWidth": "1280"}},
        }],
    },
}

def handle(conn):
    data = b''
    while b'\r\n\r\n' not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return None
        data += chunk
    head, rest = data.split(b'\r\n\r\n', 1)
    lines = head.split(b'\r\n')
    request_line = lines[0].decode('latin-1')
    headers = [l.decode('latin-1') for l in lines[1:]]
    clen = 0
    for h in headers:
        k, _, v = h.partition(':')
        if k.strip().lower() == 'content-length':
            clen = int(v.strip())
    body = rest
    while len(body) < clen:
        chunk = conn.recv(65536)
        if not chunk:
            break
        body += chunk
    method, target, _ = request_line.split(' ', 2)
    path, _, qs = target.partition('?')
    params = urllib.parse.parse_qsl(qs, keep_blank_values=True)
    action = dict(params).get('Action')
    hdrs = {h.partition(':')[0].lower(): h.partition(':')[2].strip() for h in headers}
    action = action or hdrs.get('x-acs-action') or 'unknown'
    resp = CANNED.get(action, {"RequestId": "REQ-%s-0001" % action})
    rb = json.dumps(resp).encode()
    conn.sendall(b'HTTP/1.1 200 OK\r\nContent-Type: application/json;charset=utf-8\r\n'
                 b'Content-Length: ' + str(len(rb)).encode() + b'\r\nConnection: close\r\n\r\n' + rb)
    rec = {"request_line": request_line, "method": method, "path": path, "raw_query": qs,
           "decoded_query": params, "headers": headers, "body": body.decode('utf-8', 'replace'),
           "body_len": len(body)}
    with open(OUT, 'a') as f:
        f.write(json.dumps(rec, ensure_ascii=False) + '\n')

s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('127.0.0.1', PORT)); s.listen(8)
print('listening', PORT, flush=True)
while True:
    c, _ = s.accept()
    try:
        handle(c)
    finally:
        c.close()
