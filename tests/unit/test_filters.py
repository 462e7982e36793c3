"""is_candidate / PathFilter: which relpaths an inbox takes in (pure, no files)."""

from __future__ import annotations

import pytest

from ingestd.sources.filters import (
    BUILTIN_EXCLUDES,
    PathFilter,
    check_marker_suffix,
    is_candidate,
    marked_relpath,
)


def candidate(
    relpath: str, include: tuple[str, ...] = ("*",), exclude: tuple[str, ...] = ()
) -> bool:
    return is_candidate(relpath, include=include, exclude=exclude)


@pytest.mark.parametrize(
    "relpath",
    [
        "scan.pdf.part",
        "scan.pdf.filepart",
        "scan.tmp",
        "report.pdf.crdownload",
        ".hidden.pdf",
        ".DS_Store",
        "~$resume.docx",
        "sub/x.part",
        ".git/objects/ab.pdf",  # hidden folder at the top
        "a/b/.cache/deep/x.pdf",  # hidden folder anywhere
        "a/upload.tmp/x.pdf",  # temp-named folder
    ],
)
def test_builtin_excludes_always_apply(relpath: str) -> None:
    assert not candidate(relpath)
    assert not candidate(relpath, include=("*", ".*", "*.part", "*.tmp", "~$*"))


@pytest.mark.parametrize(
    "relpath",
    ["scan.pdf", "a/b/c/resume.docx", "photo.JPG", "part.pdf", "tmp/x.pdf", "a.b.c", "x~$y.pdf"],
)
def test_ordinary_names_are_candidates_by_default(relpath: str) -> None:
    assert candidate(relpath)


def test_builtins_are_listed() -> None:
    assert set(BUILTIN_EXCLUDES) == {"*.part", "*.filepart", "*.tmp", "*.crdownload", ".*", "~$*"}


def test_include_matches_the_file_name_case_sensitively() -> None:
    include = ("*.pdf", "*.docx")
    assert candidate("a.pdf", include)
    assert candidate("deep/er/a.docx", include)
    assert not candidate("A.PDF", include)
    assert not candidate("a.jpg", include)
    assert not candidate("pdf/a.jpg", include)  # a folder name does not include a file


def test_empty_include_means_everything() -> None:
    assert candidate("a.jpg", include=())


def test_include_with_slash_matches_the_relpath_from_the_root() -> None:
    include = ("invoices/*.pdf",)
    assert candidate("invoices/a.pdf", include)
    assert candidate("invoices/2024/a.pdf", include)  # fnmatch: * crosses "/"
    assert not candidate("a.pdf", include)
    assert not candidate("old/invoices/a.pdf", include)  # anchored at the root


def test_exclude_name_pattern_matches_files_and_every_folder_level() -> None:
    exclude = ("drafts", "*.bak")
    assert not candidate("drafts/a.pdf", exclude=exclude)
    assert not candidate("x/drafts/y/a.pdf", exclude=exclude)
    assert not candidate("a.pdf.bak", exclude=exclude)
    assert not candidate("drafts", exclude=exclude)  # a file called drafts, too
    assert candidate("drafts2/a.pdf", exclude=exclude)
    assert candidate("Drafts/a.pdf", exclude=exclude)  # case-sensitive


def test_exclude_path_pattern_is_anchored_and_covers_what_lies_below() -> None:
    exclude = ("old/2019",)
    assert not candidate("old/2019/a.pdf", exclude=exclude)
    assert not candidate("old/2019/x/y.pdf", exclude=exclude)
    assert candidate("old/2020/a.pdf", exclude=exclude)
    assert candidate("a/old/2019/a.pdf", exclude=exclude)


def test_leading_and_trailing_slashes_are_ignored_in_path_patterns() -> None:
    assert not candidate("old/a.pdf", exclude=("/old/",))
    assert not candidate("old/a.pdf", exclude=("/old",))
    assert candidate("x/old/a.pdf", exclude=("/old",))
    assert candidate("a.pdf", exclude=("/", ""))  # degenerate patterns match nothing


def test_exclude_wins_over_include() -> None:
    assert not candidate("a.pdf", include=("*.pdf",), exclude=("a.*",))


def test_character_classes_and_question_mark() -> None:
    assert candidate("scan1.pdf", include=("scan?.pdf",))
    assert not candidate("scan12.pdf", include=("scan?.pdf",))
    assert candidate("b.pdf", include=("[ab].pdf",))
    assert not candidate("c.pdf", include=("[ab].pdf",))


def test_path_filter_parts_agree_with_is_candidate() -> None:
    rules = PathFilter(include=("*.pdf",), exclude=("drafts",))
    assert not rules.accepts_dir("drafts")
    assert rules.accepts_dir("a")
    assert not rules.accepts_dirs("a/drafts/b")
    assert rules.accepts_dirs("a/b")
    assert rules.accepts_leaf("drafts/x.pdf")  # the leaf alone: folders are the walker's job
    assert not rules.accepts_file("drafts/x.pdf")
    assert rules.accepts_file("a/x.pdf")
    assert not rules.accepts_file("a/x.txt")


# -- marker names ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("relpath", "suffix", "expected"),
    [
        ("a.pdf.ok", ".ok", "a.pdf"),
        ("sub/a.pdf.done", ".done", "sub/a.pdf"),
        ("a.ok.ok", ".ok", "a.ok"),  # a marker of a marker-named file
        ("a.pdf", ".ok", None),
        (".ok", ".ok", None),  # a bare marker marks nothing
        ("sub/.ok", ".ok", None),
        ("a.pdf.ok", None, None),  # marker mode off
        ("scan_READY", "_READY", "scan"),
    ],
)
def test_marked_relpath(relpath: str, suffix: str | None, expected: str | None) -> None:
    assert marked_relpath(relpath, suffix) == expected


@pytest.mark.parametrize("suffix", ["", "a/b", ".", "..", "x\x00"])
def test_unusable_marker_suffixes_are_refused(suffix: str) -> None:
    with pytest.raises(ValueError, match="marker suffix"):
        check_marker_suffix(suffix)


def test_usable_marker_suffix_is_returned() -> None:
    assert check_marker_suffix(".ok") == ".ok"
