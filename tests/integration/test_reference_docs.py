"""config/reference.md documents every key the loader accepts: the keys are read from the loader's own
check_map lists (the loader refuses any key not in one), so a key added to the loader without a line in
the reference fails here — under its own block: the loader itself reports, for a configuration that
reaches every one of its checks, each key with the path of its mapping (tests/tools/config_keys.cpp), and
the key must be documented in that block's section, by its path within the block. (A bare name is not
enough: `timeout`, `enabled` and `path` recur in many blocks.) And every error token breakerbox can
answer with is in the README's list."""
import glob
import json
import os
import re
import subprocess
import tempfile
import unittest

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "../..")


def read(rel):
    with open(os.path.join(ROOT, rel)) as f:
        return f.read()


def loader_sources():
    """{file name: text} of the loader's sources: its section readers are spread over proxy/config/."""
    paths = sorted(glob.glob(os.path.join(ROOT, "proxy/config/*.[ch]pp")))
    return {os.path.basename(p): read(os.path.relpath(p, ROOT)) for p in paths}


def loader_keys():
    source = "\n".join(loader_sources().values())
    keys = set()
    for macro in re.findall(r"#define BREAKERBOX_POLICY_KEYS((?:[^\n]*\\\n)*[^\n]*)", source):
        keys.update(re.findall(r'"([a-z_0-9]+)"', macro))
    for allowed in re.findall(r"check_map\([^{;]*\{([^}]*)\}", source, re.S):
        keys.update(re.findall(r'"([a-z_0-9]+)"', allowed))
    return keys


# A configuration with every block the loader reads (values do not matter: only the mappings present are
# checked). Upstream policies are checked through `defaults`, which holds the same keys.
EVERY_BLOCK = """
workers: 1
listeners: [{name: a, address: "127.0.0.1:0"}]
admin: {}
limits: {}
forwarding: {}
logging: {}
queue_store: {path: q.db}
cluster: {redis: "127.0.0.1:1"}
defaults:
  circuit_breaker: {failure_rate: {}, slow_calls: {}, half_open: {probe: {path: /h}}, classify: {}}
  bulkhead: {}
  retries: {budget: {}}
  pool: {}
  stale_cache: {}
  tls: {}
  outlier_detection: {failure_percentage: {}, success_rate: {}, probe: {path: /h}}
  streaming: {}
upstreams:
  u:
    endpoints: ["127.0.0.1:1"]
    routes: {path_prefix: /}
    fallbacks:
      - static: {}
      - queue: {delivery: {}}
"""


def checked_keys(yaml_text):
    binary = os.environ.get("CONFIG_KEYS_BIN", os.path.join(ROOT, "build/tests/config-keys"))
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as f:
        f.write(yaml_text)
        f.flush()
        out = subprocess.run([binary, f.name], capture_output=True, text=True, timeout=30, check=True).stdout
    return [json.loads(line) for line in out.splitlines()]


def normalized(path):
    """A loader path as the reference names it: list items as [], the upstream as <name>, defaults as the
    upstream's policies."""
    path = re.sub(r"\[\d+\]", "[]", path)
    path = re.sub(r"^upstreams\.[^.]+", "upstreams.<name>", path)
    return re.sub(r"^defaults(?=\.|$)", "upstreams.<name>", path)


def reference_sections(text):
    """{block path: backticked tokens of the section's own text}. A heading that starts with a backticked
    name opens that block's section (nested under the nearest named heading above it of a higher level);
    a heading without one (`### Policies ...`) continues its parent's. The names of a section's child
    headings are tokens of the section. In a table row, `a.b` / `c` also documents `a.c`."""
    sections = {"": set()}
    stack = [(1, "")]  # (heading level, block path)
    current = ""
    for line in text.splitlines():
        heading = re.match(r"^(#+) (.*)$", line)
        if heading:
            level, title = len(heading.group(1)), heading.group(2)
            named = re.match(r"^`([^`]+)`", title)
            while len(stack) > 1 and stack[-1][0] >= level:
                stack.pop()
            if named:
                parent = stack[-1][1]
                name = named.group(1)
                current = name if level == 2 else (parent + "." + name if parent else name)
                sections[parent].add(name)
                sections.setdefault(current, set())
                stack.append((level, current))
            elif level == 2:
                current = "" if title == "Top level" else None
                stack = [(1, "")]
            continue
        if current is None:
            continue
        tokens = re.findall(r"`([^`]+)`", line)
        sections[current].update(tokens)
        if line.startswith("|") and tokens:
            first_cell = line.split("|")[1]
            cell_tokens = re.findall(r"`([^`]+)`", first_cell)
            if cell_tokens and "." in cell_tokens[0]:
                prefix = cell_tokens[0].rsplit(".", 1)[0]
                sections[current].update(prefix + "." + t for t in cell_tokens[1:] if "." not in t)
    return sections


def documented(relative, section, tokens):
    """Whether the key at `relative` (its path inside `section`) is documented there: by that path, by the
    block's own name before it (`tls.verify` in the `tls` section), by a token that ends it (a table of
    one sub-block's keys, such as the queue's), or — for a sub-block — by its keys (`failure_rate.threshold`
    documents `failure_rate`; `upstream: NAME` documents `upstream`)."""
    block = section.rsplit(".", 1)[-1]
    parts = relative.split(".")
    suffixes = [".".join(parts[i:]) for i in range(len(parts))]
    for t in tokens:
        t = t.strip()
        if t == block + "." + relative:
            return True
        for s in suffixes:
            if t == s or t.startswith(s + ".") or t.startswith(s + ":"):
                return True
    return False


class ReferenceDocsTest(unittest.TestCase):
    def test_every_key_the_loader_accepts_is_documented(self):
        keys = loader_keys()
        self.assertGreater(len(keys), 60, "the loader's key lists were not found")
        reference = read("config/reference.md")
        documented = set()
        for code in re.findall(r"`([^`]+)`", reference):
            documented.update(re.findall(r"[a-z_0-9]+", code))
        # Section headings name the blocks (### `limits`, #### `retries`).
        missing = sorted(k for k in keys if k not in documented)
        self.assertEqual(missing, [], "keys the loader accepts but config/reference.md does not mention")

    def test_every_key_is_documented_in_its_own_block(self):
        records = checked_keys(EVERY_BLOCK)
        # The configuration above must reach every check of the loader: a block added to the loader
        # needs a line there (and its section in the reference). A check is named by its file and line.
        sites = {(name, i + 1)
                 for name, text in loader_sources().items()
                 for i, line in enumerate(text.splitlines())
                 if "check_map(" in line and not re.search(r"\bbool (reader::)?check_map\(", line)}
        reached = {(r["file"], r["line"]) for r in records}
        self.assertGreater(len(sites), 30, "the loader's checks were not found")
        self.assertEqual(sorted(sites - reached), [], "proxy/config lines whose check_map EVERY_BLOCK does not reach")
        sections = reference_sections(read("config/reference.md"))
        missing = []
        for r in records:
            path = normalized(r["path"])
            section = max((name for name in sections if path == name or path.startswith(name + ".") or name == ""),
                          key=len)
            relative = (path[len(section):].lstrip(".") + "." + r["key"]).lstrip(".")
            if not documented(relative, section, sections[section]):
                missing.append("%s: `%s` (in the `%s` section)" % (r["path"], r["key"], section or "Top level"))
        self.maxDiff = None
        self.assertEqual(sorted(set(missing)), [], "keys config/reference.md does not document in their own block")

    def test_the_check_can_fail(self):
        sections = reference_sections(read("config/reference.md"))
        self.assertFalse(documented("half_open.timeout", "upstreams.<name>.circuit_breaker",
                                    sections["upstreams.<name>.circuit_breaker"]))
        self.assertFalse(documented("enabled", "upstreams.<name>.bulkhead", sections["upstreams.<name>.bulkhead"]))
        self.assertTrue(documented("half_open.probe.timeout", "upstreams.<name>.circuit_breaker",
                                   sections["upstreams.<name>.circuit_breaker"]))

    def test_every_error_token_is_in_the_readme(self):
        source = read("proxy/core/error.hpp")
        tokens = set(re.findall(r'X\(([a-z_]+), \d+, "', source)) - {"ok", "upstream_failure_status", "client_closed"}
        self.assertGreater(len(tokens), 15)
        readme = read("README.md")
        missing = sorted(t for t in tokens if t not in readme)
        self.assertEqual(missing, [], "error tokens the README's list does not give")


if __name__ == "__main__":
    unittest.main()
