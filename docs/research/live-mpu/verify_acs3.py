"""Independent re-implementation of the Tea SDK ACS3-HMAC-SHA256 signature, checked
against the captured requests (capture_tea.jsonl). Prints canonical request for the first one."""
import json, hashlib, hmac, sys, urllib.parse
SECRET = 'FakeAccessKeySecretForTests0123'
path = sys.argv[1] if len(sys.argv) > 1 else '/tmp/research/capture_tea.jsonl'
ok = 0
for i, line in enumerate(open(path)):
    r = json.loads(line)
    hdrs = {}
    for h in r['headers']:
        k, _, v = h.partition(':'); hdrs[k.strip().lower()] = v.strip()
    auth = hdrs.get('authorization')
    if not auth or not auth.startswith('ACS3'):
        continue
    signed = auth.split('SignedHeaders=')[1].split(',')[0].split(';')
    q = r['decoded_query']  # list of (k, v) decoded with '+' -> ' '
    cq = '&'.join(f"{k}={urllib.parse.quote(v, safe='~')}" for k, v in sorted(q))
    ch = ''.join(f'{k}:{hdrs[k]}\n' for k in signed)
    payload_hash = hashlib.sha256(r['body'].encode()).hexdigest()
    creq = f"{r['method']}\n{r['path']}\n{cq}\n{ch}\n{';'.join(signed)}\n{payload_hash}"
    sts = 'ACS3-HMAC-SHA256\n' + hashlib.sha256(creq.encode()).hexdigest()
    sig = hmac.new(SECRET.encode(), sts.encode(), hashlib.sha256).hexdigest()
    match = auth.endswith('Signature=' + sig)
    ok += match
    if i == 0:
        print('--- canonical request (request #0) ---'); print(creq); print('--- string to sign ---'); print(sts); print('sig', sig)
    print(i, hdrs['x-acs-action'], 'MATCH' if match else 'MISMATCH')
print('matched', ok)
