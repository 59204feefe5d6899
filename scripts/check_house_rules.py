#!/usr/bin/env python3
"""The house rules that can be checked by reading the source (docs/architecture.md, ../shared/style.md):

1. Dependencies point down: a module under proxy/ includes only modules below it in the layer order that
   docs/architecture.md states on its line starting "Layers, top to bottom:" — never one above it, never a
   sibling on its own layer.
2. Small functions: no function body in proxy/ longer than 60 lines.
3. Files that do one thing: no proxy/ .cpp file longer than 800 lines.

Exit status 1 with one line per violation (file:line and what), 0 when every rule holds. Run by CTest
(`house_rules`); `python3 scripts/check_house_rules.py --list` prints the longest functions.
"""
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROXY = os.path.join(ROOT, "proxy")
MAX_FUNCTION_LINES = 60
MAX_CPP_LINES = 800


def layers():
    """[{module, ...}, ...] top to bottom, from docs/architecture.md."""
    with open(os.path.join(ROOT, "docs", "architecture.md"), encoding="utf-8") as f:
        for line in f:
            if line.startswith("Layers, top to bottom:"):
                spec = line.split(":", 1)[1]
                return [set(re.findall(r"`([a-z_]+)`", part)) for part in spec.split("→")]
    sys.exit("docs/architecture.md has no line starting 'Layers, top to bottom:'")


def sources():
    for root, _, files in os.walk(PROXY):
        for name in sorted(files):
            if name.endswith((".cpp", ".hpp")):
                yield os.path.join(root, name)


def module_of(path):
    rel = os.path.relpath(path, PROXY)
    return rel.split(os.sep)[0] if os.sep in rel else "app"


def strip_comments_and_strings(text):
    """The text with comments, string and character literals blanked (newlines kept)."""
    out, i, n = [], 0, len(text)
    while i < n:
        if text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            out.append("\n" * text.count("\n", i, j + 2))
            i = j + 2
        elif text.startswith('R"', i):
            m = re.match(r'R"([^(]*)\(', text[i:])
            end = text.find(")" + m.group(1) + '"', i)
            out.append('""' + "\n" * text.count("\n", i, end))
            i = end + len(m.group(1)) + 2
        elif text[i] in "\"'" and not (text[i] == "'" and i > 0 and text[i - 1].isalnum()):
            quote, j = text[i], i + 1
            while j < n and text[j] != quote:
                j += 2 if text[j] == "\\" else 1
            out.append(quote * 2)
            i = j + 1
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


CONTROL = re.compile(r"\b(if|for|while|switch|catch|namespace|struct|class|enum|union|do|else)\b")


def function_lengths(path):
    """(first line, lines, name) of each outermost function body in the file."""
    text = strip_comments_and_strings(open(path, encoding="utf-8").read())
    found, stack, last = [], [], 0
    for i, c in enumerate(text):
        if c == "{":
            head = text[last:i]
            is_function = ")" in head and not CONTROL.search(head) and not re.search(r"=\s*$", head)
            stack.append((i, is_function and not any(f for _, f, _ in stack), head))
            last = i + 1
        elif c == "}":
            if stack:
                start, is_function, head = stack.pop()
                if is_function:
                    first = text.count("\n", 0, start) + 1
                    names = re.findall(r"([~\w:]+)\s*\(", head)
                    found.append((first, text.count("\n", 0, i) + 1 - first + 1, names[0] if names else "?"))
            last = i + 1
        elif c == ";":
            last = i + 1
    return found


def check():
    order = layers()
    rank = {m: k for k, group in enumerate(order) for m in group}
    problems, lengths = [], []
    for path in sources():
        rel = os.path.relpath(path, ROOT)
        mod = module_of(path)
        if mod not in rank:
            problems.append(f"{rel}: module `{mod}` is not in docs/architecture.md's layer order")
            continue
        lines = open(path, encoding="utf-8").read().split("\n")
        for number, line in enumerate(lines, 1):
            m = re.match(r'#include "([a-z_]+)/', line)
            if m and m.group(1) != mod and m.group(1) in rank and rank[m.group(1)] <= rank[mod]:
                where = "a sibling" if rank[m.group(1)] == rank[mod] else "a module above it"
                problems.append(f"{rel}:{number}: `{mod}` includes `{m.group(1)}`, {where}")
        if path.endswith(".cpp") and len(lines) > MAX_CPP_LINES:
            problems.append(f"{rel}: {len(lines)} lines (at most {MAX_CPP_LINES}: one file, one thing)")
        for first, count, name in function_lengths(path):
            lengths.append((count, rel, first, name))
            if count > MAX_FUNCTION_LINES:
                problems.append(f"{rel}:{first}: `{name}` is {count} lines (at most {MAX_FUNCTION_LINES})")
    return problems, sorted(lengths, reverse=True)


def main():
    problems, lengths = check()
    if "--list" in sys.argv:
        for count, rel, first, name in lengths[:25]:
            print(f"{count:4} {rel}:{first} {name}")
    for p in problems:
        print(p)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
