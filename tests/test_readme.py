"""README.md runs as written: every command of every ```bash block, in order, in one shell, as a
newcomer would type them into one terminal after cloning (issue 15), so the README cannot drift
from the program.

How the commands run:
- in a scratch copy of the checkout (every top-level entry linked, the installed `.venv`
  included, so `make quickstart` finds it set up; whatever the commands write lands in the
  scratch folder), in one `bash` session, so `source .venv/bin/activate`, `cd` and `export`
  carry on to the next command as they would for a reader;
- with PATH stripped of every folder that holds a `probekit` program (a bare `probekit` works
  only once the README has said how to get it), the Hub offline, fresh caches and HOME.

What is not run as written — the only exceptions:
- a command line ending in a comment `# (not run by the tests: <why>)` is skipped: for the
  few commands that cannot run offline (a push to the Hub) or name a placeholder the reader
  fills in. A command that runs this test suite (`make test`, `pytest`) must carry the marker;
- `probekit eval …` lines get `--limit 32` (small splits: such a run is a task of its own,
  `<task>-limit32`, never submitted); `make quickstart` runs the real quickstart;
- `probekit spectrum train|sweep` get `--steps 8 --episodes 64` (sweep also `--seeds 1`).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
SKIP = re.compile(r"#\s*\(not run by the tests:\s*[^)]+\)\s*$")
LIMIT = 32
OUTPUTS = {"results", "runs", "site", "store", ".pytest_cache", ".hypothesis", "build", "dist"}
TIMEOUT_S = 3600


@dataclass(frozen=True)
class Command:
    line: int  # in README.md
    text: str  # as written (continuations joined)
    skipped: str | None = None  # the reason given, when marked

    @property
    def run(self) -> str:
        """What the test runs: the command with the test's documented shrinking."""
        return shrink(self.text)


def bash_blocks(markdown: str) -> list[tuple[int, list[str]]]:
    """(first line number, lines) of every fenced ```bash (or ```sh, ```shell) block."""
    blocks, current, start, fence = [], None, 0, ""
    for n, line in enumerate(markdown.splitlines(), 1):
        stripped = line.strip()
        if current is None:
            m = re.match(r"^(`{3,}|~{3,})\s*(bash|sh|shell|console)\s*$", stripped)
            if m:
                current, start, fence = [], n + 1, m.group(1)
        elif stripped.startswith(fence) and stripped.strip("`~") == "":
            blocks.append((start, current))
            current = None
        else:
            current.append(line)
    if current is not None:
        raise ValueError(f"README.md: the ``` block opened on line {start - 1} is never closed")
    return blocks


def commands(markdown: str) -> list[Command]:
    """The commands of every bash block: comment lines and blank lines dropped, backslash
    continuations joined, `$ ` prompts removed, marked lines kept as skipped."""
    out = []
    for start, lines in bash_blocks(markdown):
        pending, first = "", 0
        for i, line in enumerate(lines):
            text = line.strip()
            if not pending and (not text or text.startswith("#")):
                continue
            if not pending:
                first = start + i
                text = text[2:] if text.startswith("$ ") else text
            if text.endswith("\\"):
                pending += text[:-1].rstrip() + " "
                continue
            text = pending + text
            pending = ""
            marked = SKIP.search(text)
            out.append(Command(first, text, marked.group(0) if marked else None))
        if pending:
            out.append(Command(first, pending.strip()))
    return out


def split_comment(text: str) -> tuple[str, str]:
    """(command, trailing comment) — a `#` after whitespace, outside quotes."""
    quote = None
    for i, ch in enumerate(text):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and i > 0 and text[i - 1].isspace():
            return text[:i].rstrip(), text[i:]
    return text, ""


def shrink(text: str) -> str:
    """The test's rewrites (module docstring): small splits for evals, few steps for training."""
    command, comment = split_comment(text)
    extra = ""
    if re.search(r"(^|[\s/])probekit\s+eval(\s|$)", command) and "--limit" not in command:
        extra = f" --limit {LIMIT}"
    elif re.search(r"(^|[\s/])probekit\s+spectrum\s+train(\s|$)", command):
        extra = " --steps 8 --episodes 64"
    elif re.search(r"(^|[\s/])probekit\s+spectrum\s+sweep(\s|$)", command):
        extra = " --steps 8 --episodes 64 --seeds 1"
    return command + extra


def runs_the_suite(text: str) -> bool:
    command, _ = split_comment(text)
    return bool(re.search(r"(^|[\s;&|/])(make\s+test\b|pytest\b|python3? -m pytest\b)", command))


def script(cmds: list[Command]) -> str:
    """One bash script running every command that is not skipped, each between markers that
    carry its index and exit status; a failing command does not stop the next."""
    parts = ["exec 2>&1"]
    for i, c in enumerate(cmds):
        if c.skipped:
            continue
        parts += [f"printf '\\n@@@ start {i}\\n'", c.run, f"printf '\\n@@@ end {i} %d\\n' $?"]
    return "\n".join(parts) + "\n"


def outcomes(output: str) -> dict[int, tuple[int, str]]:
    """{index: (exit status, output)} from the markers of `script`."""
    found, current, buf = {}, None, []
    for line in output.splitlines():
        m = re.fullmatch(r"@@@ (start|end) (\d+)(?: (\d+))?", line.strip())
        if m and m.group(1) == "start":
            current, buf = int(m.group(2)), []
        elif m and current is not None:
            found[current] = (int(m.group(3)), "\n".join(buf))
            current = None
        elif current is not None:
            buf.append(line)
    return found


def scratch_checkout(where: Path) -> Path:
    """A folder holding a link to every top-level entry of the checkout but its outputs."""
    where.mkdir()
    for entry in ROOT.iterdir():
        if entry.name not in OUTPUTS and entry.name != ".git":
            (where / entry.name).symlink_to(entry)
    return where


def environment(home: Path) -> dict[str, str]:
    keep = ("LANG", "LC_ALL", "TERM", "TMPDIR", "OMP_NUM_THREADS", "OMP_WAIT_POLICY")
    env = {k: os.environ[k] for k in keep if k in os.environ}
    path = [p for p in os.environ.get("PATH", "").split(os.pathsep)
            if p and not (Path(p) / "probekit").exists()
            and Path(p).resolve() != Path(sys.executable).parent.resolve()]
    env.update(PATH=os.pathsep.join(path), HOME=str(home), HF_HUB_OFFLINE="1",
               HF_DATASETS_OFFLINE="1", HF_HOME=str(home / "hf"),
               PROBEKIT_CACHE=str(home / "probekit-cache"), PROBEKIT_README_TEST="1",
               OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    return env


# --- the parser, on its own ---------------------------------------------------------------

SAMPLE = """\
Some prose.

```bash
make quickstart   # set up
make test         # (not run by the tests: it is this suite)
```

```python
probekit.evaluate("x")
```

```bash
# a comment line
probekit eval boxes-gpt2-tiny --tasks boxes \\
    --out results/        # results land here
probekit data push boxes --repo ORG/NAME   # (not run by the tests: pushes to the Hub)
.venv/bin/probekit spectrum sweep --task boxes --seeds 3 --out runs/
```
"""


def test_commands_are_read_from_bash_blocks_only():
    got = commands(SAMPLE)
    assert [c.text.split("#")[0].split() for c in got] == [
        ["make", "quickstart"], ["make", "test"],
        ["probekit", "eval", "boxes-gpt2-tiny", "--tasks", "boxes", "--out", "results/"],
        ["probekit", "data", "push", "boxes", "--repo", "ORG/NAME"],
        [".venv/bin/probekit", "spectrum", "sweep", "--task", "boxes", "--seeds", "3", "--out",
         "runs/"]]
    assert [c.line for c in got] == [4, 5, 14, 16, 17]
    assert [bool(c.skipped) for c in got] == [False, True, False, True, False]
    assert got[1].skipped == "# (not run by the tests: it is this suite)"


def test_the_rewrites_are_the_documented_ones():
    got = commands(SAMPLE)
    assert got[0].run == "make quickstart"
    assert got[2].run == ("probekit eval boxes-gpt2-tiny --tasks boxes --out results/ "
                          f"--limit {LIMIT}")
    assert got[4].run.endswith("--out runs/ --steps 8 --episodes 64 --seeds 1")
    assert shrink("probekit eval m --limit 5") == "probekit eval m --limit 5"
    assert shrink('probekit tasks show "a # b"  # c') == 'probekit tasks show "a # b"'
    assert runs_the_suite("make test   # the suite") and runs_the_suite("OMP_NUM_THREADS=1 "
                                                                        ".venv/bin/pytest -q")
    assert not runs_the_suite("make quickstart  # then make test")


def test_the_script_reports_each_command(tmp_path):
    cmds = [Command(1, "true"), Command(2, "false  # a comment"), Command(3, "exit 3",
                                                                          "# (not run …)"),
            Command(4, "cd / && echo here"), Command(5, "pwd")]
    done = subprocess.run(["bash", "-c", script(cmds)], capture_output=True, text=True,
                          timeout=60)
    got = outcomes(done.stdout)
    assert {i: rc for i, (rc, _) in got.items()} == {0: 0, 1: 1, 3: 0, 4: 0}
    assert got[3][1].strip() == "here" and got[4][1].strip() == "/"  # cd carried on


def test_unclosed_block_is_an_error():
    with pytest.raises(ValueError, match="never closed"):
        commands("```bash\nprobekit tasks list\n")


# --- the README itself --------------------------------------------------------------------

def test_readme_has_commands_and_marks_the_suite():
    cmds = commands(README.read_text(encoding="utf-8"))
    assert cmds, "README.md has no ```bash block"
    unmarked = [f"line {c.line}: {c.text}" for c in cmds if not c.skipped and
                runs_the_suite(c.text)]
    assert not unmarked, ("these README commands run the test suite, which runs this test; mark "
                          "them `# (not run by the tests: it is the test suite)`:\n"
                          + "\n".join(unmarked))


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("PROBEKIT_README_TEST") == "1",
                    reason="already inside a README run")
@pytest.mark.skipif(shutil.which("bash") is None or shutil.which("make") is None,
                    reason="needs bash and make")
def test_every_readme_command_runs(tmp_path):
    cmds = commands(README.read_text(encoding="utf-8"))
    if any(not c.skipped and runs_the_suite(c.text) for c in cmds):
        pytest.fail("README.md runs the test suite unmarked (see "
                    "test_readme_has_commands_and_marks_the_suite); nothing was run")
    if not (ROOT / ".venv" / ".installed").exists():
        pytest.skip("no .venv set up by `make setup` in the checkout")
    work = scratch_checkout(tmp_path / "probekit")
    (tmp_path / "home").mkdir()
    done = subprocess.run(["bash", "-c", script(cmds)], cwd=work, env=environment(
        tmp_path / "home"), capture_output=True, text=True, timeout=TIMEOUT_S)
    got = outcomes(done.stdout)
    failures = []
    for i, c in enumerate(cmds):
        if c.skipped:
            continue
        if i not in got:
            failures.append(f"line {c.line}: `{c.run}` did not finish (the shell stopped)")
            continue
        rc, output = got[i]
        if rc != 0:
            tail = "\n    ".join(output.strip().splitlines()[-6:])
            failures.append(f"line {c.line}: `{c.run}` exited {rc}:\n    {tail}")
    assert not failures, (f"{len(failures)} README command(s) failed (ran in {work}):\n"
                          + "\n".join(failures))
