"""The files a published project carries: a license, a citation entry, a workflow that builds and deploys the book
with the README's command, and a pre-commit hook that keeps the source notebooks free of outputs."""

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def test_the_workflow_builds_the_book_with_the_readmes_command_and_deploys_it():
    workflow = yaml.safe_load((ROOT / ".github/workflows/book.yml").read_text())
    readme_command = next(line.split("#")[0].strip() for line in (ROOT / "README.md").read_text().splitlines() if line.startswith("make book"))
    build = workflow["jobs"]["build"]
    assert readme_command in [step.get("run") for step in build["steps"]]
    assert build["env"]["COMPAT_TRAIN"] == "never"
    upload = next(s for s in build["steps"] if s.get("uses", "").startswith("actions/upload-pages-artifact"))
    assert upload["with"]["path"] == "_build/html"
    assert any(s.get("uses", "").startswith("actions/deploy-pages") for s in workflow["jobs"]["deploy"]["steps"])


def test_citation_and_license_are_present_and_parse():
    citation = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert citation["cff-version"] and citation["title"] and citation["license"] == "MIT"
    assert {r["year"] for r in citation["references"]} == {2020, 2022}
    assert "MIT License" in (ROOT / "LICENSE").read_text() and "DATA_TERMS.md" in (ROOT / "LICENSE").read_text()


def test_the_pre_commit_hook_strips_the_source_notebooks():
    hooks = [h for repo in yaml.safe_load((ROOT / ".pre-commit-config.yaml").read_text())["repos"] for h in repo["hooks"]]
    strip = next(h for h in hooks if h["id"] == "nbstripout")
    assert strip["files"].startswith("^notebooks/")


def test_the_published_book_links_its_repository_from_one_value_and_a_local_build_does_not():
    import pytest

    from compat.booktools import with_repository
    from compat.errors import ConfigError

    text = (ROOT / "_config.yml").read_text()
    local = yaml.safe_load(text)
    assert local["html"]["use_repository_button"] is False and "repository" not in local
    published = yaml.safe_load(with_repository(text, "https://github.com/owner/compat-book"))
    assert published["repository"] == {"url": "https://github.com/owner/compat-book", "branch": "main"}
    assert published["html"]["use_repository_button"] is True and published["html"]["use_issues_button"] is True
    assert {k: v for k, v in published.items() if k != "repository"} == {**local, "html": published["html"]}  # nothing else changes
    assert "launch_buttons" not in published  # the executed pages are not in the repository
    with pytest.raises(ConfigError, match="repository URL 'github.com/owner' is not of the form https://HOST/OWNER/REPO"):
        with_repository(text, "github.com/owner")
    with pytest.raises(ConfigError, match="already names a repository"):
        with_repository(with_repository(text, "https://github.com/a/b"), "https://github.com/a/b")
    workflow = yaml.safe_load((ROOT / ".github/workflows/book.yml").read_text())
    runs = [s.get("run", "") for s in workflow["jobs"]["build"]["steps"]]
    step = next(i for i, r in enumerate(runs) if "compat book repository" in r)
    assert "${{ github.server_url }}/${{ github.repository }}" in runs[step] and step < runs.index("make book")
