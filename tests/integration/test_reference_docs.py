"""config/reference.md documents every key the loader accepts: the keys are read from the loader's own
check_map lists (the loader refuses any key not in one), so a key added to the loader without a line in
the reference fails here. And every error token breakerbox can answer with is in the README's list."""
import os
import re
import unittest

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "../..")


def read(rel):
    with open(os.path.join(ROOT, rel)) as f:
        return f.read()


def loader_keys():
    source = read("proxy/config/loader.cpp")
    keys = set()
    for macro in re.findall(r"#define BREAKERBOX_POLICY_KEYS((?:[^\n]*\\\n)*[^\n]*)", source):
        keys.update(re.findall(r'"([a-z_0-9]+)"', macro))
    for allowed in re.findall(r"check_map\([^{;]*\{([^}]*)\}", source, re.S):
        keys.update(re.findall(r'"([a-z_0-9]+)"', allowed))
    return keys


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

    def test_every_error_token_is_in_the_readme(self):
        source = read("proxy/core/error.hpp")
        tokens = set(re.findall(r'X\(([a-z_]+), \d+, "', source)) - {"ok", "upstream_failure_status", "client_closed"}
        self.assertGreater(len(tokens), 15)
        readme = read("README.md")
        missing = sorted(t for t in tokens if t not in readme)
        self.assertEqual(missing, [], "error tokens the README's list does not give")


if __name__ == "__main__":
    unittest.main()
