"""hutch key create|list|revoke on a state directory, as the host's admin uses them."""
import re
import sqlite3
import subprocess

KEY = re.compile(r"^e2b_[0-9a-f]{40}$")


def hutch(bindir, *args, env=None):
    return subprocess.run([str(bindir / "hutch"), "key", *args], capture_output=True, text=True,
                          timeout=30, env=env)


def test_create_list_revoke(bindir, tmp_path):
    state = str(tmp_path / "state")
    p = hutch(bindir, "create", "--name", "laptop", "--state-dir", state)
    assert p.returncode == 0, p.stderr
    key = p.stdout.strip()
    assert KEY.match(key), key
    key_id = re.search(r"Created key (key_[0-9a-f]{8})", p.stderr).group(1)

    p = hutch(bindir, "list", "--state-dir", state)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0].split() == ["ID", "KEY", "CREATED", "STATE", "NAME"]
    assert len(lines) == 2
    assert lines[1].split()[0] == key_id
    assert lines[1].split()[1] == "e2b_..." + key[-4:]
    assert "valid" in lines[1] and "laptop" in lines[1]
    assert key not in p.stdout  # the key itself is never shown again

    p = hutch(bindir, "revoke", key_id, "--state-dir", state)
    assert p.returncode == 0, p.stderr
    assert "revoked" in hutch(bindir, "list", "--state-dir", state).stdout

    p = hutch(bindir, "revoke", key_id, "--state-dir", state)
    assert p.returncode == 1
    assert "already revoked" in p.stderr


def test_only_the_hash_is_stored(bindir, tmp_path):
    state = tmp_path / "state"
    key = hutch(bindir, "create", "--state-dir", str(state)).stdout.strip()
    raw = (state / "hutch.db").read_bytes()
    wal = state / "hutch.db-wal"
    if wal.exists():
        raw += wal.read_bytes()
    assert key.encode() not in raw
    assert key[4:].encode() not in raw
    with sqlite3.connect(state / "hutch.db") as db:
        (count,) = db.execute("SELECT count(*) FROM api_keys").fetchone()
    assert count == 1


def test_state_dir_from_environment(bindir, tmp_path):
    import os
    env = dict(os.environ, HUTCH_STATE_DIR=str(tmp_path / "envstate"))
    assert hutch(bindir, "create", env=env).returncode == 0
    assert (tmp_path / "envstate" / "hutch.db").exists()


def test_usage_errors(bindir, tmp_path):
    state = str(tmp_path / "s")
    assert hutch(bindir).returncode == 2
    assert hutch(bindir, "explode", "--state-dir", state).returncode == 2
    assert hutch(bindir, "revoke", "--state-dir", state).returncode == 2
    assert hutch(bindir, "list", "extra", "--state-dir", state).returncode == 2
    p = hutch(bindir, "revoke", "key_00000000", "--state-dir", state)
    assert p.returncode == 1
    assert "no key with id 'key_00000000'" in p.stderr


def test_unusable_state_dir_is_a_clear_error(bindir, tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    p = hutch(bindir, "list", "--state-dir", str(f))
    assert p.returncode == 1
    assert "not a directory" in p.stderr
