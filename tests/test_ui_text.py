"""What the app's source shows a person, checked as text: no emoji (machines without an emoji font draw
empty boxes), Material icons instead, no Deploy button, and navigation titles that match the pages."""
import ast
import re
import tomllib
import unicodedata
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
APP_FILES = [REPO / "app.py", *sorted((REPO / "app_pages").glob("*.py")), *sorted((REPO / "ui").glob("*.py"))]
# Emoji and pictograph blocks, the dingbats and symbols that browsers draw as emoji, and the emoji
# variation selector. Typographic characters the app uses (· → … ≈ λ τ –) are outside them.
EMOJI_RANGES = [(0x1F000, 0x1FAFF), (0x2600, 0x27BF), (0x2300, 0x23FF), (0x2B00, 0x2BFF), (0xFE0F, 0xFE0F),
                (0x1F1E6, 0x1F1FF), (0x200D, 0x200D)]
MATERIAL = re.compile(r"^:material/[a-z0-9_]+:$")


def is_emoji(char):
    return any(low <= ord(char) <= high for low, high in EMOJI_RANGES)


def nav_pages():
    """app.py's PAGES, read without running streamlit: (file, title, url path, icon) per page."""
    tree = ast.parse((REPO / "app.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "PAGES" for t in node.targets):
            return ast.literal_eval(node.value)
    raise AssertionError("app.py has no PAGES list")


def test_the_emoji_check_recognises_emoji():
    assert all(is_emoji(c) for c in "🎭🚫⏳🏃✋⏸✅❌💀\ufe0f")
    assert not any(is_emoji(c) for c in "·→…≈λτ–×")


@pytest.mark.parametrize("path", APP_FILES, ids=lambda p: str(p.relative_to(REPO)))
def test_no_emoji_in_the_app(path):
    found = [f"line {number}: {char!r} ({unicodedata.name(char, hex(ord(char)))})"
             for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
             for char in line if is_emoji(char)]
    assert not found, f"{path.name}: emoji show as empty boxes without an emoji font, use :material/...: icons: {found}"


def test_icons_are_material_symbols():
    for path, title, url, icon in nav_pages():
        assert MATERIAL.match(icon), (title, icon)
    for path in APP_FILES:
        for icon in re.findall(r"\bicon=\"([^\"]*)\"", path.read_text(encoding="utf-8")):
            assert MATERIAL.match(icon), (path.name, icon)


def test_the_tab_icon_is_the_apps_own_file_set_once_before_the_navigation():
    """A Material icon as the tab's icon (a page's, or a nav entry's when none is set) is fetched as a picture from
    Google's font server, which an offline machine cannot reach; app.py sets an SVG of its own, sent inline."""
    assert [p.name for p in APP_FILES if "page_icon" in p.read_text(encoding="utf-8")] == ["app.py"]
    source = (REPO / "app.py").read_text(encoding="utf-8")
    assert source.index("st.set_page_config(page_icon=FAVICON") < source.index("st.navigation(")
    assert (REPO / "ui" / "favicon.svg").read_text(encoding="utf-8").startswith("<svg")


def test_config_hides_the_deploy_button_and_keeps_the_server_settings():
    config = tomllib.loads((REPO / ".streamlit" / "config.toml").read_text(encoding="utf-8"))
    assert config["client"]["toolbarMode"] == "minimal"
    assert config["server"]["address"] == "localhost" and config["server"]["enableXsrfProtection"] is True
    assert config["browser"]["gatherUsageStats"] is False


def test_every_page_is_titled_as_the_navigation_names_it():
    pages = nav_pages()
    assert [path for path, *_ in pages] == sorted(p.relative_to(REPO).as_posix() for p in (REPO / "app_pages").glob("*.py"))
    for path, title, url, icon in pages:
        source = (REPO / path).read_text(encoding="utf-8")
        page_title = re.search(r"st\.set_page_config\(page_title=\"([^\"]+)\"", source).group(1)
        heading = re.search(r"^st\.title\(\"([^\"]+)\"\)", source, re.MULTILINE).group(1)
        if not url:  # the home page carries the app's name
            assert (page_title, heading) == ("PASM Studio", "PASM Studio")
            continue
        assert page_title == f"{title} · PASM Studio", (path, page_title)
        assert heading == title, (path, heading)


@pytest.mark.parametrize("text", ["nonsense:x: unknown data set kind", ":material/home: and :red[alert]",
                                  "email:me@host.example", "a_b *c* `d` [e](f) <g> #h |i| ~j~ $k$ &amp; \\n",
                                  "- item", "1. item", "> quote", "plain: words, as typed"])
def test_markdown_literal_leaves_nothing_that_streamlit_would_render(text):
    """What ui.state.markdown_literal returns opens no shortcode, icon, directive or formatting, and reads back as the
    text itself (the browser test sees it rendered so)."""
    from ui.state import markdown_literal

    literal = markdown_literal(text)
    assert not re.search(r":\S", literal), "a colon that could open :x:, :material/...: or :name"
    rest = literal.replace("&#58;", "")
    assert not re.search(r"(?<!\\)[`*_\[\]<>#|~$&]", rest), "formatting, a heading, a table cell, LaTeX or an entity"
    assert re.sub(r"\\(.)", r"\1", literal.replace("&#58;", ":")) == text
