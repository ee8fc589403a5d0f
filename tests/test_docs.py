"""The teaching docs in docs/ stay true to the code.

Two conventions, described at the top of docs/README.md, make that checkable:

- A link to code lines has a code token as its text and a line anchor as its target
  (a link without an anchor is a plain file link),

      [`dw = (cache.cols.T @ dz)`](../minicnn/kernels/conv.py#L110)
      [`v = max(v, 0.0)`](../minicnn/kernels/elementwise.py#L29-L31)

  The file must exist, the lines must be inside it, and the token must occur in those
  lines (whitespace runs count as one space; the token may span the lines). When code
  moves, the link fails here and the message says where the token is now.
- Every ```python block runs, in order, one namespace per page, in a temporary folder.
  A block right after a `<!-- not-run -->` line is a fragment and is skipped.

Every other relative link must point at an existing file or folder.
"""
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.glob("*.md"))
NOT_RUN = "<!-- not-run -->"

FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```[ \t]*$", re.S | re.M)
CODE_LINK = re.compile(r"\[`(?P<token>[^`]+)`\]\((?P<target>[^)\s]+)\)")
ANY_TARGET = re.compile(r"\]\((?P<target>[^)\s]+)\)")
LINE_ANCHOR = re.compile(r"^L(?P<start>\d+)(?:-L(?P<end>\d+))?$")


def _squash(text):
    return " ".join(text.split())


def _prose(page):
    """The page with its fenced code blocks blanked out (links live in the prose)."""
    return FENCE.sub(lambda m: "\n" * m.group(0).count("\n"), page.read_text(encoding="utf-8"))


def _code_links(page):
    return [(m.group("token"), m.group("target")) for m in CODE_LINK.finditer(_prose(page))]


def _python_blocks(page):
    """(line number, source) of every ```python block not marked <!-- not-run -->."""
    text = page.read_text(encoding="utf-8")
    blocks = []
    for m in FENCE.finditer(text):
        if m.group(1) != "python":
            continue
        before = text[:m.start()].rstrip().splitlines()
        if before and before[-1].strip() == NOT_RUN:
            continue
        blocks.append((text[:m.start()].count("\n") + 1, m.group(2)))
    return blocks


def test_there_are_docs():
    names = {p.name for p in PAGES}
    assert {"README.md", "lecture-mapping.md"} <= names, names
    assert sum(len(_code_links(p)) for p in PAGES) >= 40


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_code_links_point_at_their_token(page):
    problems = []
    for token, target in _code_links(page):
        path, _, anchor = target.partition("#")
        if not anchor:
            continue                 # a plain file link, checked by test_relative_links_exist
        where = f"[`{token}`]({target})"
        file = (page.parent / path).resolve()
        if not file.is_file():
            problems.append(f"{where}: no file {file.relative_to(ROOT) if ROOT in file.parents else file}")
            continue
        m = LINE_ANCHOR.match(anchor)
        if not m:
            problems.append(f"{where}: expected a line anchor #L<start> or #L<start>-L<end>")
            continue
        lines = file.read_text(encoding="utf-8").splitlines()
        start = int(m.group("start"))
        end = int(m.group("end") or start)
        if not 1 <= start <= end <= len(lines):
            problems.append(f"{where}: lines {start}-{end} are outside the file's {len(lines)} lines")
            continue
        if _squash(token) not in _squash(" ".join(lines[start - 1:end])):
            now = [str(i) for i, line in enumerate(lines, 1) if _squash(token) in _squash(line)]
            hint = f"; the token is now on line(s) {', '.join(now)}" if now else \
                "; the token is on no single line of the file now"
            problems.append(f"{where}: the token is not in lines {start}-{end}{hint}")
    assert not problems, "code links that drifted off their code:\n" + "\n".join(problems)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_line_anchors_only_on_code_links(page):
    """A line anchor without a token could not be checked; every one must have one."""
    prose = _prose(page)
    checked = {target for _, target in _code_links(page)}
    unchecked = [m.group("target") for m in ANY_TARGET.finditer(prose)
                 if re.search(r"#L\d", m.group("target")) and m.group("target") not in checked]
    assert not unchecked, (f"links with line anchors but no [`token`] text: {unchecked}; "
                           f"write them as [`code token`](path#Lstart-Lend)")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_relative_links_exist(page):
    missing = []
    for m in ANY_TARGET.finditer(_prose(page)):
        target = m.group("target")
        if re.match(r"^[a-z]+:", target) or target.startswith("#"):
            continue
        path = target.partition("#")[0]
        if not (page.parent / path).exists():
            missing.append(target)
    assert not missing, f"links to files that do not exist: {missing}"


@pytest.mark.parametrize("page", [p for p in PAGES if _python_blocks(p)], ids=lambda p: p.name)
def test_python_blocks_run(page, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": f"docs_{page.stem.replace('-', '_')}"}
    for line, source in _python_blocks(page):
        code = compile(source, f"{page.relative_to(ROOT)}:{line}", "exec")
        try:
            exec(code, namespace)
        except Exception as error:          # say which block, then let pytest show the trace
            raise AssertionError(f"the python block at {page.name} line {line} failed: "
                                 f"{type(error).__name__}: {error}") from error


def test_every_python_block_is_checked_or_marked():
    """A ```py or ```python3 block would escape the runner: only ```python is used."""
    odd = [(p.name, m.group(1)) for p in PAGES
           for m in FENCE.finditer(p.read_text(encoding="utf-8"))
           if m.group(1) in ("py", "python3", "pycon", "ipython")]
    assert not odd, f"use ```python (run) or <!-- not-run --> before it (skipped): {odd}"


def test_not_run_marks_are_rare():
    skipped = sum(p.read_text(encoding="utf-8").count(NOT_RUN) for p in PAGES)
    ran = sum(len(_python_blocks(p)) for p in PAGES)
    assert skipped <= max(2, ran // 4), (skipped, ran)

