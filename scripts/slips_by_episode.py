#!/usr/bin/env python3
"""Success of 20 Questions episodes by the number of oracle slips in them.

Usage: scripts/slips_by_episode.py CORPUS_DIR   (JSONL shards written by `dialogym generate`)
A slip is an answer to a bank question that differs from the knowledge table's answer
for the secret (scenarios/data/twenty_questions.toml)."""
import collections, glob, json, os, sys, tomllib

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..')
T=tomllib.load(open(ROOT + '/scenarios/data/twenty_questions.toml','rb'))
objs=json.load(open(ROOT + '/scenarios/data/twenty_questions_objects.json'))['objects']
cat={o['names'][0]:o['category'] for o in objs}
def ans(attr,name):
    for k in ('yes','sometimes','no'):
        if name in attr.get(k,[]): return k
    for k in ('yes','sometimes','no'):
        if '@'+cat[name] in attr.get(k,[]): return k
    return 'no'
Q={a['question']:a for a in T['attribute']}
def slips(e):
    name=e['hidden']['name']; n=0; m=e['messages']
    for i in range(0,len(m)-1):
        if m[i]['role']=='agent' and m[i]['content'] in Q:
            truth=ans(Q[m[i]['content']],name); said=m[i+1]['content'].lower().rstrip('.')
            if said!=truth: n+=1
    return n
if len(sys.argv) != 2:
    sys.exit(__doc__)
d=sys.argv[1]
eps=[json.loads(l) for f in sorted(glob.glob(d+'/*.jsonl')) for l in open(f)]
c=collections.Counter((min(slips(e),3), e['success']) for e in eps)
for (n, won), count in sorted(c.items()):
    plus = '+' if n == 3 else ''
    print(f"slips {n}{plus}, success {won}: {count} episodes")
