"""No chapter types a measured number: every number in the narrative text of the notebooks and pages is a
config value, a fact of the data, a number quoted from a named source (listed here), or a small count.
Measured numbers are computed in code cells from the result files, so a rerun cannot make the text false."""

import re
from pathlib import Path

import nbformat

from compat.config import PROFILES, config_keys, get_profile

ROOT = Path(__file__).resolve().parents[1]
# numbers the text quotes, each with where it comes from
QUOTED = {
    "6368": "BCT, CVPR 2020, first page",
    "6377": "BCT, CVPR 2020, last page",
    "9": "BCT's update gain is its Eq. (9)",
    "1615": "UniBCT, IJCAI 2022, first page",
    "1621": "UniBCT, IJCAI 2022, last page",
    "94%": "airbench's title",
    "3.29": "airbench's title",
    "10": "CIFAR-10 (airbench's title)",
    "100": "CIFAR-100; the papers' 100 epochs (ml-fct configs)",
    "50": "ResNet-50; FCT's CIFAR-100 old model sees 50 of 100 classes",
    "90": "openBCT trains 90 epochs",
    "224": "the papers' ImageNet input size",
    "500": "FCT's ImageNet old model sees 500 classes",
    "1000": "ImageNet-1k classes",
    "0.2": "SimCLR's crop area and grayscale probability (augment.py)",
    "0.8": "SimCLR's colour-jitter probability (augment.py)",
    "2.1": "SimCLR paper, Sec. 2.1",
    "95 %": "every interval is a 95 % interval",
    "70 %": "UniBCT's 30/70 split",
    "70": "UniBCT's 30/70 split",
    "30": "UniBCT's 30/70 split",
    "100 %": "the backfill's share of itself",
    "200": "Tiny-ImageNet-200",
}


def _config_numbers() -> set[str]:
    numbers = set()
    for name in PROFILES:
        profile = get_profile(name)
        for key in config_keys(profile):
            obj = profile
            for part in key.split("."):
                obj = getattr(obj, part)
            for v in obj if isinstance(obj, tuple) else (obj,):
                if isinstance(v, (int, float)) and not isinstance(v, bool):
                    numbers |= {f"{v:g}", f"{v:,}" if isinstance(v, int) else f"{v:g}"}
                    if isinstance(v, float) and 0 < v < 1:
                        numbers.add(f"{100 * v:g} %")
    return numbers


def _narrative() -> dict[str, str]:
    texts = {p.stem: p.read_text() for p in (ROOT / "book").glob("*.md")}
    for path in (ROOT / "notebooks").glob("*.ipynb"):
        texts[path.stem] = "\n".join(c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "markdown")
    return texts


def _numbers(text: str) -> list[str]:
    for pattern in (
        r"\$\$.*?\$\$",
        r"\$[^$\n]*\$",
        r"`[^`]*`",
        r"\{\w+(:\w+)?\}",
        r"arXiv \d+\.\d+",
        r"\b(19|20)\d\d\b",
        r"https?://\S+",
        r"\b\d+x\d+\b",
    ):
        text = re.sub(pattern, " ", text, flags=re.DOTALL)
    return re.findall(r"(?<![\w.-])\d+(?:[.,]\d+)*(?:\s?%)?", text)


def test_no_chapter_types_a_number_that_neither_the_config_nor_a_named_source_holds():
    allowed = _config_numbers() | set(QUOTED) | {str(n) for n in range(6)}
    typed = {name: sorted(set(n for n in _numbers(text) if n not in allowed)) for name, text in _narrative().items()}
    typed = {name: numbers for name, numbers in typed.items() if numbers}
    assert not typed, (
        f"numbers typed into the text: {typed}; compute them in a code cell from the results, or, if quoted, add them to QUOTED with their source"
    )


PICTURES = {"fig-image-grid", "fig-splits", "fig-fct-retrieval"}  # images and maps, not measured values
# how a caption declares its figure's uncertainty: an interval, the seeds' range, or that it has none
UNCERTAINTY = re.compile(r"95 % (bootstrap )?intervals?|the seeds' range|the range of the seeds|without intervals")


def _figure_captions() -> dict[str, str]:
    captions = {}
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        for cell in nbformat.read(path, as_version=4).cells:
            figure = cell.metadata.get("mystnb", {}).get("figure")
            if figure:
                captions[figure["name"]] = figure.get("caption", "")
    return captions


def test_every_figure_of_measured_values_declares_its_error_bars_in_its_caption():
    captions = _figure_captions()
    assert PICTURES <= set(captions) and len(captions) > len(PICTURES)
    undeclared = {name: text for name, text in captions.items() if name not in PICTURES and not UNCERTAINTY.search(text)}
    assert not undeclared, f"figures whose caption says neither their interval nor that they have none: {undeclared}"


def test_the_check_finds_an_undeclared_caption():
    assert UNCERTAINTY.search("Top-1 at L2; bars: 95 % bootstrap intervals over queries.")
    assert not UNCERTAINTY.search("Top-1 retrieval (L2, mean over seeds) of each strategy at each generation.")


def test_the_check_finds_a_typed_result():
    assert _numbers("BCT reaches 16.9 top-1 against $M = 3.2$ and `0.5`") == ["16.9"]


def test_the_bibliography_is_labelled_as_the_text_cites_it():
    """book/_ext/author_year_labels.py on the book's own references.bib and on constructed entries: one, two and
    more authors, and two entries that would read the same."""
    import sys

    from pybtex.database import parse_file, parse_string

    sys.path.insert(0, str(ROOT / "book" / "_ext"))
    from author_year_labels import AuthorYearStyle

    def labels(bib):
        return [entry.label for entry in AuthorYearStyle().format_bibliography(bib).entries]

    made = parse_string(
        """@article{a, author = {Ng, Andrew}, title = {One}, journal = {J}, year = {2001}}
        @article{b, author = {Shen, Yantao and Xiong, Yuanjun}, title = {Two}, journal = {J}, year = {2020}}
        @article{c, author = {Shen, Yantao and Xiong, Yuanjun}, title = {Three}, journal = {J}, year = {2020}}
        @article{d, author = {Le, Ya and Yang, Xuan and Ng, Andrew}, title = {Four}, journal = {J}, year = {2015}}
        @article{e, author = {Zhou, Li and others}, title = {Five}, journal = {J}, year = {2023}}
        @misc{f, author = {{TencentARC}}, title = {Six}, year = {2022}}""",
        "bibtex",
    )
    assert labels(made) == ["Le et al., 2015", "Ng, 2001", "Shen and Xiong, 2020a", "Shen and Xiong, 2020b", "TencentARC, 2022", "Zhou et al., 2023"]
    book = labels(parse_file(ROOT / "book" / "references.bib"))
    assert len(book) == len(set(book)) and all(re.fullmatch(r"[^\[\]]+, (\d{4}[a-z]?|n\.d\.)", label) for label in book)
