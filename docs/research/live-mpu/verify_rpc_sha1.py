"""Independent check of the legacy RPC signature (SignatureVersion 1.0, HMAC-SHA1) on captured
requests (core SDK, or Tea SDK with signature_algorithm='v2')."""
import json, hashlib, hmac, base64, sys, urllib.parse
SECRET = 'FakeAccessKeySecretForTests0123'
pe = lambda s: urllib.parse.quote(s, safe='~')
ok = n = 0
for i, line in enumerate(open(sys.argv[1])):
    r = json.loads(line)
    q = r['decoded_query']
    sig = dict(q)['Signature']
    params = sorted((k, v) for k, v in q if k != 'Signature')
    canon = '&'.join(f'{pe(k)}={pe(v)}' for k, v in params)
    sts = f"{r['method']}&%2F&{pe(canon)}"
    mine = base64.b64encode(hmac.new((SECRET + '&').encode(), sts.encode(), hashlib.sha1).digest()).decode()
    n += 1; ok += mine == sig
    if i == 0:
        print('string to sign #0:'); print(sts)
    print(i, dict(q)['Action'], 'MATCH' if mine == sig else f'MISMATCH {mine} != {sig}')
print(f'matched {ok}/{n}')
