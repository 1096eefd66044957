#!/usr/bin/env python3
"""Checks of tests/tools/sops_encrypt.py against the independent reference decryptor
(shared/test-vectors/sops/tools/sopsref.py, which verifies the MAC), and of the SOPS
documents committed under examples/.

    python3 -m unittest discover -s tests/tools -v

Needs what sops_encrypt.py needs (PyYAML, cryptography, the age CLI); the reference checks are
skipped when shared/ is not beside the repository.
"""

import json
import pathlib
import subprocess
import sys
import tempfile
import unittest

REPO = pathlib.Path(__file__).resolve().parents[2]
TOOL = REPO / "tests/tools/sops_encrypt.py"
DEMO_KEY = REPO / "examples/keys/demo-age.key"
SOPSREF = REPO.parent / "shared/test-vectors/sops/tools/sopsref.py"

PLAIN = """\
password: hunter2
port: 6443
ratio: 0.5
whole: 2.0
enabled: true
legacy_word: yes
empty: ""
when: 2024-01-02
nested:
  list: [one, two]
  maps:
    - key: value
      n: 1
notes_unencrypted:
  owner: platform team
"""

EXPECTED = {
    "password": "hunter2",
    "port": 6443,
    "ratio": 0.5,
    "whole": 2.0,
    "enabled": True,
    "legacy_word": "yes",
    "empty": "",
    "when": "2024-01-02",
    "nested": {"list": ["one", "two"], "maps": [{"key": "value", "n": 1}]},
    "notes_unencrypted": {"owner": "platform team"},
}


def run(*args, **kw):
    return subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True, **kw)


class SopsEncrypt(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.dir = pathlib.Path(cls.tmp.name)
        (cls.dir / "plain.yaml").write_text(PLAIN)
        r = run(TOOL, "-i", DEMO_KEY, "--lastmodified", "2025-01-01T00:00:00Z", cls.dir / "plain.yaml", "-o", cls.dir / "doc.enc.yaml")
        assert r.returncode == 0, r.stderr
        cls.doc = (cls.dir / "doc.enc.yaml").read_text()

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def test_layout(self):
        self.assertIn("password: ENC[AES256_GCM,data:", self.doc)
        self.assertIn(",type:int]", self.doc)
        self.assertIn(",type:float]", self.doc)
        self.assertIn(",type:bool]", self.doc)
        self.assertIn('empty: ""', self.doc)
        self.assertIn("  owner: platform team", self.doc)  # under the unencrypted suffix
        self.assertIn('  lastmodified: "2025-01-01T00:00:00Z"', self.doc)
        self.assertIn("-----BEGIN AGE ENCRYPTED FILE-----", self.doc)
        self.assertNotIn("hunter2", self.doc)

    @unittest.skipUnless(SOPSREF.exists(), "shared/ test vectors not available")
    def test_reference_decryptor_opens_it_and_verifies_the_mac(self):
        r = run(SOPSREF, DEMO_KEY, self.dir / "doc.enc.yaml")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(json.loads(r.stdout), EXPECTED)

    @unittest.skipUnless(SOPSREF.exists(), "shared/ test vectors not available")
    def test_tampering_is_detected(self):
        bad = self.dir / "bad.enc.yaml"
        # A clear value under the suffix still counts in the MAC.
        bad.write_text(self.doc.replace("owner: platform team", "owner: someone else"))
        r = run(SOPSREF, DEMO_KEY, bad)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("MAC mismatch", r.stdout + r.stderr)

    def test_refuses_what_it_cannot_represent(self):
        for text, msg in [("a: null\n", "null"), ("- 1\n", "mapping"), ("sops: {}\n", "encrypted already")]:
            p = self.dir / "x.yaml"
            p.write_text(text)
            r = run(TOOL, "-i", DEMO_KEY, p)
            self.assertNotEqual(r.returncode, 0)
            self.assertIn(msg, r.stderr)

    @unittest.skipUnless(SOPSREF.exists(), "shared/ test vectors not available")
    def test_example_documents_open_with_the_demo_key(self):
        recipient = subprocess.run(["age-keygen", "-y", str(DEMO_KEY)], capture_output=True, text=True).stdout.strip()
        docs = [d for d in sorted(REPO.glob("examples/**/*.enc.yaml")) if recipient in d.read_text()]
        self.assertTrue(docs)
        for doc in docs:
            with self.subTest(doc=str(doc.relative_to(REPO))):
                r = run(SOPSREF, DEMO_KEY, doc)
                self.assertEqual(r.returncode, 0, r.stderr)


if __name__ == "__main__":
    unittest.main()
