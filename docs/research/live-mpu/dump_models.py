"""Dump Tea (alibabacloud_live20161101) model classes: attr, annotation, wire key, doc comment."""
import ast, sys, glob, os, re
base = sys.argv[1]
files = sys.argv[2:]
for fn in files:
    src = open(os.path.join(base, fn)).read()
    lines = src.splitlines()
    tree = ast.parse(src)
    print(f"\n### `{fn}`")
    for cls in [n for n in tree.body if isinstance(n, ast.ClassDef)]:
        init = next((f for f in cls.body if isinstance(f, ast.FunctionDef) and f.name == '__init__'), None)
        tomap = next((f for f in cls.body if isinstance(f, ast.FunctionDef) and f.name == 'to_map'), None)
        ann = {}
        if init:
            for a in init.args.args[1:]:
                ann[a.arg] = ast.unparse(a.annotation).replace('main_models.', '') if a.annotation else '?'
        keys = {}
        always_list = set()
        if tomap:
            for node in ast.walk(tomap):
                if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Subscript):
                    t = node.targets[0]
                    if isinstance(t.value, ast.Name) and t.value.id == 'result':
                        k = t.slice.value if isinstance(t.slice, ast.Constant) else None
                        v = node.value
                        attr = None
                        for sub in ast.walk(v):
                            if isinstance(sub, ast.Attribute) and isinstance(sub.value, ast.Name) and sub.value.id == 'self':
                                attr = sub.attr; break
                        if isinstance(v, ast.List):
                            always_list.add(k)
                        elif attr:
                            keys[attr] = k
            # list keys: find loops "for k1 in self.attr" appending to result['Key']
            for node in ast.walk(tomap):
                if isinstance(node, ast.For) and isinstance(node.iter, ast.Attribute):
                    attr = node.iter.attr
                    for sub in ast.walk(node):
                        if isinstance(sub, ast.Subscript) and isinstance(sub.slice, ast.Constant):
                            keys[attr] = sub.slice.value; break
                if isinstance(node, ast.For) and isinstance(node.iter, ast.Call):
                    # dict iteration: for k1, v1 in self.x.items()
                    for sub in ast.walk(node.iter):
                        if isinstance(sub, ast.Attribute) and isinstance(sub.value, ast.Name) and sub.value.id=='self':
                            for s2 in ast.walk(node):
                                if isinstance(s2, ast.Subscript) and isinstance(s2.slice, ast.Constant):
                                    keys[sub.attr] = s2.slice.value; break
                            break
        # doc comments preceding self.x = x in __init__
        docs = {}
        if init:
            for st in init.body:
                if isinstance(st, ast.Assign) and isinstance(st.targets[0], ast.Attribute):
                    attr = st.targets[0].attr
                    i = st.lineno - 2
                    c = []
                    while i >= 0 and lines[i].strip().startswith('#'):
                        c.insert(0, lines[i].strip()[1:].strip()); i -= 1
                    d = ' '.join(x for x in c if x)
                    d = re.sub(r'\s+', ' ', d)
                    docs[attr] = d
        print(f"\n**{cls.name}**\n")
        print("| wire key | python attr | type | notes |")
        print("|---|---|---|---|")
        for a, t in ann.items():
            k = keys.get(a, '?')
            note = docs.get(a, '')
            if k in always_list:
                note = '[to_map ALWAYS emits this key, [] when None] ' + note
            if len(note) > 400: note = note[:400] + '…'
            print(f"| `{k}` | {a} | `{t}` | {note.replace('|','/')} |")
