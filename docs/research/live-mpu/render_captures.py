"""Render capture_*.jsonl into markdown blocks (raw request + decoded JSON-valued params)."""
import json, sys
path = sys.argv[1]; labels = sys.argv[2].split('|') if len(sys.argv) > 2 else None
only = set(int(x) for x in sys.argv[3].split(',')) if len(sys.argv) > 3 else None
for i, line in enumerate(open(path)):
    if only is not None and i not in only:
        continue
    r = json.loads(line)
    lab = labels[i] if labels and i < len(labels) else f'request #{i}'
    print(f'\n#### {lab}\n')
    print('```http')
    print(r['request_line'])
    for h in r['headers']:
        print(h)
    print()
    if r['body']:
        print(r['body'])
    print('```')
    js = [(k, v) for k, v in r['decoded_query'] if v[:1] in '[{']
    if js:
        print('\nDecoded JSON-string parameters (exact bytes after percent-decoding):\n')
        print('```')
        for k, v in js:
            print(f'{k} = {v}')
        print('```')
