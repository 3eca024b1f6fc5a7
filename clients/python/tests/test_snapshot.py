"""snapshot() against folders that change while they are copied and links that leave: no airlockd needed (a fake
client answers "clean" for every file of the copy)."""

import hashlib
import os
import shutil
import stat as stat_module
import sys
import tempfile
import unittest

import airlock_client
from airlock_client.client import Report

snapshot_module = sys.modules["airlock_client.snapshot"]


class CleanClient:
    """Answers probe_folder with a clean report for each file of the copy, and keeps what the copy held."""

    def __init__(self):
        self.files = {}

    def probe_folder(self, copy, **_options):
        reports = []
        for folder, _, names in os.walk(copy):
            for name in names:
                full = os.path.join(folder, name)
                with open(full, "rb") as f:
                    data = f.read()
                self.files[os.path.relpath(full, copy)] = data
                reports.append(Report({"verdict": "clean",
                                       "target": {"path": name, "sha256": hashlib.sha256(data).hexdigest()}}))
        return reports


class SnapshotTests(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="airlock-snapshot-test-")
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.secret = os.path.join(self.dir, "secret")
        os.makedirs(self.secret)
        with open(os.path.join(self.secret, "SECRET.txt"), "w") as f:
            f.write("outside the snapshot\n")

    def write(self, path, data=b"{}"):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)

    def snapshot(self, source):
        client = CleanClient()
        copy = airlock_client.snapshot(source, client=client, dest=self.dir)
        airlock_client.remove_snapshot(copy)
        return client.files

    def swap_when(self, model, hook, when):
        """Runs snapshot(model) with ``hook`` wrapped so that, once ``when(args)``, ``model/a`` becomes a link to
        the secret folder; returns what the copy held, or raises what snapshot raised."""
        real = getattr(snapshot_module, hook)
        done = []

        def wrapped(*args, **kwargs):
            result = real(*args, **kwargs)
            if not done and when(args):
                done.append(True)
                os.rename(os.path.join(model, "a"), os.path.join(self.dir, "a.old"))
                os.symlink(self.secret, os.path.join(model, "a"))
            return result

        setattr(snapshot_module, hook, wrapped)
        self.addCleanup(setattr, snapshot_module, hook, real)
        try:
            return self.snapshot(model)
        finally:
            setattr(snapshot_module, hook, real)
            self.assertTrue(done, "the swap happened")

    def test_a_folder_swapped_for_a_link_after_it_was_listed_is_refused(self):
        model = os.path.join(self.dir, "model")
        self.write(os.path.join(model, "a", "config.json"))
        self.write(os.path.join(model, "z.json"))
        self.assertEqual(sorted(self.snapshot(model)), ["a/config.json", "z.json"])
        # Swapped at each point between the listing of the top folder and the opening of "a": its stat, and the
        # copy of a file (z.json is copied before "a" is listed by a breadth-first or path-based walk).
        real_stat, real_lstat = os.stat, os.lstat

        def swapping(real):
            def stat(path, *args, **kwargs):
                result = real(path, *args, **kwargs)
                name = os.fsdecode(path) if isinstance(path, (str, bytes)) else ""
                if os.path.basename(name) == "a" and stat_module.S_ISDIR(real_lstat(os.path.join(model, "a")).st_mode):
                    os.rename(os.path.join(model, "a"), os.path.join(self.dir, "a.old"))
                    os.symlink(self.secret, os.path.join(model, "a"))
                return result
            return stat

        for trial in ("stat", "copy"):
            with self.subTest(trial):
                shutil.rmtree(model)
                shutil.rmtree(os.path.join(self.dir, "a.old"), ignore_errors=True)
                self.write(os.path.join(model, "a", "config.json"))
                self.write(os.path.join(model, "z.json"))
                try:
                    if trial == "stat":
                        os.stat, os.lstat = swapping(real_stat), swapping(real_lstat)
                        try:
                            files = self.snapshot(model)
                        finally:
                            os.stat, os.lstat = real_stat, real_lstat
                    else:
                        files = self.swap_when(model, "_copy_file", lambda args: "z.json" in str(args))
                except airlock_client.InputError:
                    continue
                self.assertNotIn("a/SECRET.txt", files)

    def test_a_file_swapped_for_a_link_after_it_was_listed_is_refused_or_copied_as_it_was(self):
        model = os.path.join(self.dir, "model")
        self.write(os.path.join(model, "a"), b"model bytes")
        real_stat = os.stat

        def stat(path, *args, **kwargs):
            result = real_stat(path, *args, **kwargs)
            if path == "a" and stat_module.S_ISREG(os.lstat(os.path.join(model, "a")).st_mode):
                os.rename(os.path.join(model, "a"), os.path.join(self.dir, "a.old"))
                os.symlink(os.path.join(self.secret, "SECRET.txt"), os.path.join(model, "a"))
            return result

        os.stat = stat
        try:
            with self.assertRaises(airlock_client.InputError):
                self.snapshot(model)
        finally:
            os.stat = real_stat

    def test_a_folder_named_snapshots_does_not_widen_where_links_may_go(self):
        home = os.path.join(self.dir, "home")
        self.write(os.path.join(home, ".ssh", "id_rsa"), b"-----BEGIN FAKE PRIVATE KEY-----\n")
        model = os.path.join(home, "snapshots", "llama")
        self.write(os.path.join(model, "config.json"))
        os.symlink("../../.ssh/id_rsa", os.path.join(model, "tokenizer.model"))
        with self.assertRaises(airlock_client.InputError):
            self.snapshot(model)
        # Nor a models--X/snapshots/REV without blobs/, nor a link to models--X/other from a real cache entry.
        repo = os.path.join(self.dir, "models--org--name")
        os.makedirs(os.path.join(repo, "snapshots"))
        os.rename(os.path.join(home, "snapshots", "llama"), os.path.join(repo, "snapshots", "rev"))
        model = os.path.join(repo, "snapshots", "rev")
        os.remove(os.path.join(model, "tokenizer.model"))
        self.write(os.path.join(repo, "refs", "main"), b"rev")
        os.symlink("../../refs/main", os.path.join(model, "tokenizer.model"))
        with self.assertRaises(airlock_client.InputError):
            self.snapshot(model)
        os.makedirs(os.path.join(repo, "blobs"))
        with self.assertRaises(airlock_client.InputError):
            self.snapshot(model)
        os.remove(os.path.join(model, "tokenizer.model"))
        self.write(os.path.join(repo, "blobs", "b0"), b"tokens")
        os.symlink("../../blobs/b0", os.path.join(model, "tokenizer.model"))
        os.symlink("../../blobs", os.path.join(model, "dir-link"))
        with self.assertRaises(airlock_client.InputError):  # a link to a folder
            self.snapshot(model)
        os.remove(os.path.join(model, "dir-link"))
        os.symlink("config.json", os.path.join(model, "inner"))
        files = self.snapshot(model)
        self.assertEqual(files, {"config.json": b"{}", "tokenizer.model": b"tokens", "inner": b"{}"})
        # The same names elsewhere: not a cache entry, the blob link is refused.
        for kind in ("datasets--a--b", "spaces--a--b"):
            os.rename(repo, os.path.join(self.dir, kind))
            repo = os.path.join(self.dir, kind)
            self.assertIn("tokenizer.model", self.snapshot(os.path.join(repo, "snapshots", "rev")))
        os.rename(repo, os.path.join(self.dir, "other--a--b"))
        with self.assertRaises(airlock_client.InputError):
            self.snapshot(os.path.join(self.dir, "other--a--b", "snapshots", "rev"))

    def test_links_to_devices_fifos_and_absolute_paths_out_are_refused_without_opening_them(self):
        model = os.path.join(self.dir, "model")
        self.write(os.path.join(model, "config.json"))
        os.mkfifo(os.path.join(self.dir, "fifo"))
        for target in ("/dev/zero", os.path.join(self.dir, "fifo"), "/etc/passwd",
                       os.path.join(self.secret, "SECRET.txt"), "../secret/SECRET.txt"):
            with self.subTest(target):
                link = os.path.join(model, "x.bin")
                if os.path.lexists(link):
                    os.remove(link)
                os.symlink(target, link)
                with self.assertRaises(airlock_client.InputError):
                    self.snapshot(model)

    def test_the_walk_keeps_few_descriptors_open_and_bounds_entries(self):
        model = os.path.join(self.dir, "model")
        for i in range(300):
            self.write(os.path.join(model, f"d{i}", "f.json"))
        before = len(os.listdir("/proc/self/fd"))
        files = self.snapshot(model)
        self.assertEqual(len(files), 300)
        self.assertLessEqual(len(os.listdir("/proc/self/fd")), before)  # none left open (others may close)
        with self.assertRaises(airlock_client.InputError):
            airlock_client.snapshot(model, client=CleanClient(), dest=self.dir, max_entries=100)
        self.assertEqual([n for n in os.listdir(self.dir) if n.startswith("airlock-snapshot-")], [])


if __name__ == "__main__":
    unittest.main()
