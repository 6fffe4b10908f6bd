#!/usr/bin/env python3
"""Counts the public items of a crate from its rustdoc HTML: every item page listed in
all.html, plus the methods, associated constants and types, struct fields and enum variants
documented on those pages (trait implementations' methods excluded)."""
import re, sys, os, html
root = sys.argv[1] if len(sys.argv) > 1 else 'target/doc/omni_metrics'
allp = open(os.path.join(root, 'all.html')).read()
items = sorted(set(re.findall(r'href="([^"]+\.html)"', allp)))
items = [i for i in items if not i.startswith('http') and '/' in i or re.match(r'^(struct|enum|fn|trait|type|constant|static|macro)\.', i)]
total = len(items)
members = 0
for i in items:
    p = os.path.join(root, i)
    if not os.path.exists(p):
        continue
    s = open(p).read()
    # Inherent members only: stop at the trait implementations section.
    cut = s.find('id="trait-implementations"')
    if cut > 0:
        s = s[:cut]
    members += len(set(re.findall(r'id="((?:method|tymethod|structfield|variant|associatedconstant|associatedtype)\.[^"]+)"', s)))
mods = len(re.findall(r'<li><a href="[^"]*index\.html">', allp))
print(f"items {total} + members {members} = {total + members}")
