"""The guide and its pages hold together: every link and picture in README.md and docs/*.md
points at a file that exists, every `#anchor` at a heading of its target (GitHub's slugs), every
external link is a well-formed http(s) URL (not fetched), and the README stays a short guide.

Standard library only; no project code is imported.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
README_MAX_BYTES = 15_000

FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
ATX_HEADING = re.compile(r"^ {0,3}#{1,6}(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
SETEXT_UNDERLINE = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
CODE_SPAN = re.compile(r"(`+)(?!`)(.+?)(?<!`)\1(?!`)", re.S)
# [text](destination) and ![alt](destination); the text may hold one level of brackets, the
# destination one level of parentheses. The destination is split from a title afterwards.
INLINE_LINK = re.compile(
    r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(([^()\n]*(?:\([^()\n]*\)[^()\n]*)*)\)")
TITLE = re.compile(r"^(\S+)\s+(?:\"[^\"]*\"|'[^']*'|\([^)]*\))$")
# [label]: target
DEFINITION = re.compile(r"^ {0,3}\[[^\]]+\]:\s*(<[^>\n]*>|\S+)", re.M)
HTML_ANCHOR = re.compile(r"<a\s[^>]*\b(?:name|id)=\"([^\"]+)\"", re.I)


def markdown_files() -> list[Path]:
    return [README, *sorted(DOCS.glob("*.md"))]


def prose_lines(text: str) -> Iterator[tuple[int, str]]:
    """(line number, line) of every line outside fenced code blocks."""
    fence: str | None = None
    for number, line in enumerate(text.splitlines(), 1):
        match = FENCE.match(line)
        if fence is None:
            if match:
                fence = match.group(1)
                continue
            yield number, line
        elif match and match.group(1)[0] == fence[0] and len(match.group(1)) >= len(fence) \
                and not line.strip()[len(match.group(1)):].strip():
            fence = None


def without_code(text: str) -> str:
    """The text with fenced blocks blanked and code spans removed (line numbers kept)."""
    lines = text.splitlines()
    kept = {number for number, _ in prose_lines(text)}
    prose = "\n".join(line if n in kept else "" for n, line in enumerate(lines, 1))
    return CODE_SPAN.sub(lambda m: "\n" * m.group(0).count("\n"), prose)


def heading_text(raw: str) -> str:
    """A heading's text as rendered: code spans, links and images give their text."""
    text = CODE_SPAN.sub(lambda m: m.group(2).strip(), raw)
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", text)
    return re.sub(r"<[^>]+>", "", text)


def slug(text: str) -> str:
    """GitHub's heading anchor: lowercase; letters, digits, `_`, `-` and spaces kept, any other
    punctuation dropped; each space becomes a hyphen."""
    kept = "".join(c for c in heading_text(text).strip().lower()
                   if c.isalnum() or c in "-_ ")
    return kept.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every anchor a file's headings (and explicit HTML anchors) give, duplicates numbered."""
    text = path.read_text(encoding="utf-8")
    seen: dict[str, int] = {}
    found: set[str] = set(HTML_ANCHOR.findall(text))
    previous = ""
    for _, line in prose_lines(text):
        title = None
        atx = ATX_HEADING.match(line)
        if atx:
            title = atx.group(1) or ""
        elif SETEXT_UNDERLINE.match(line) and previous.strip() \
                and not re.match(r"^ {0,3}([#>|*+-]|\d+[.)])", previous):
            title = previous
        previous = line
        if title is None:
            continue
        base = slug(title)
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def link_targets(text: str) -> Iterator[tuple[int, str]]:
    """(line number, target) of every inline link, image and link definition."""
    prose = without_code(text)
    for pattern in (INLINE_LINK, DEFINITION):
        for match in pattern.finditer(prose):
            target = match.group(1).strip()
            if target.startswith("<") and ">" in target:
                target = target[1:target.index(">")]
            elif titled := TITLE.match(target):
                target = titled.group(1)
            yield prose.count("\n", 0, match.start()) + 1, target


def link_problem(source: Path, target: str) -> str | None:
    """Why `target`, linked from `source`, does not resolve; None when it does."""
    if not target:
        return "empty link target"
    parts = urlsplit(target)
    if parts.scheme:
        if parts.scheme not in ("http", "https"):
            return f"scheme {parts.scheme!r} is neither http nor https"
        if not parts.netloc or not re.fullmatch(r"[A-Za-z0-9.-]+(:\d+)?", parts.netloc) \
                or any(c.isspace() for c in target):
            return "malformed http(s) URL"
        return None
    if target.startswith("//"):
        return "protocol-relative URL"
    path, _, fragment = target.partition("#")
    if path.startswith("/"):
        return "absolute path: link relative to the file instead"
    file = source if not path else (source.parent / unquote(path)).resolve()
    if not file.exists():
        return f"{path} does not exist"
    if not fragment:
        return None
    if file.suffix.lower() != ".md":
        return f"anchor #{fragment} into a file that is not Markdown"
    if unquote(fragment).lower() not in anchors(file):
        return f"no heading of {shown(file)} has the anchor #{fragment}"
    return None


def shown(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def problems(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8")
    return [f"{shown(path)}:{line}: ({target}) {problem}"
            for line, target in link_targets(text)
            if (problem := link_problem(path, target)) is not None]


@pytest.mark.parametrize("path", markdown_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_link_resolves(path: Path) -> None:
    assert problems(path) == []


def test_the_readme_is_a_short_guide() -> None:
    size = len(README.read_bytes())
    assert size <= README_MAX_BYTES, f"README.md is {size} bytes; move depth into docs/"


def test_every_docs_page_is_linked_from_the_readme() -> None:
    linked = {(ROOT / target.partition("#")[0]).resolve()
              for _, target in link_targets(README.read_text(encoding="utf-8"))
              if not urlsplit(target).scheme and target.partition("#")[0]}
    pages = set(DOCS.glob("*.md"))
    assert pages, "docs/ has no pages"
    assert {p.name for p in pages if p.resolve() not in linked} == set()


def test_slugs_follow_github() -> None:
    assert slug("Five-minute guide") == "five-minute-guide"
    assert slug("Security: signing keys") == "security-signing-keys"
    assert slug("`msgstate bench`") == "msgstate-bench"
    assert slug("Where SPEC and Rocket.Chat leave room") == "where-spec-and-rocketchat-leave-room"
    assert slug("Metrics, health and logs") == "metrics-health-and-logs"
    assert slug("The engine: Python reference and compiled") == "the-engine-python-reference-and-compiled"


def test_the_check_notices_broken_links(tmp_path: Path) -> None:
    (tmp_path / "other.md").write_text("# Other page\n\n## A section\n\nSetext\n------\n")
    page = tmp_path / "page.md"
    page.write_text(
        "# Page\n\n## Same\n\n## Same\n\n"
        "[ok](other.md) [ok](other.md#a-section) [ok](#same-1) [ok](other.md#setext)\n"
        "![ok](other.md) [ok](https://example.com/x?y=1#z)\n"
        "`[ignored](missing.md)`\n\n```\n[ignored](missing.md)\n```\n\n"
        "[bad](missing.md) [bad](other.md#nowhere) [bad](#same-2) ![bad](gone.png)\n"
        "[bad](https://exa mple.com) [bad](ftp://example.com/f) [bad](http:///path)\n"
        "[bad]: missing-too.md\n")
    found = [link_problem(page, target) for _, target in link_targets(page.read_text())]
    targets = [target for _, target in link_targets(page.read_text())]
    broken = {t for t, p in zip(targets, found, strict=True) if p is not None}
    assert broken == {"missing.md", "other.md#nowhere", "#same-2", "gone.png",
                      "https://exa mple.com", "ftp://example.com/f", "http:///path", "missing-too.md"}
