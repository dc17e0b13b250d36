"""The hutch command line, run as a user would."""
import subprocess

from conftest import ROOT


def run(bindir, *args):
    return subprocess.run([str(bindir / "hutch"), *args], capture_output=True, text=True,
                          timeout=30)


def test_version_prints_project_version(bindir):
    meson = (ROOT / "meson.build").read_text()
    version = meson.split("version : '", 1)[1].split("'", 1)[0]
    for flag in ("version", "--version", "-V"):
        p = run(bindir, flag)
        assert p.returncode == 0, p.stderr
        assert p.stdout == f"hutch {version}\n"


def test_help_lists_commands(bindir):
    p = run(bindir, "help")
    assert p.returncode == 0
    assert "Usage: hutch COMMAND" in p.stdout
    assert "version" in p.stdout


def test_no_arguments_shows_usage_and_fails(bindir):
    p = run(bindir)
    assert p.returncode == 2
    assert "Usage: hutch COMMAND" in p.stdout


def test_unknown_command_is_a_clear_error(bindir):
    p = run(bindir, "frobnicate")
    assert p.returncode == 2
    assert "unknown command 'frobnicate'" in p.stderr
    assert p.stdout == ""
