"""Sphinx extension: the bibliography labelled as the text cites it.

The chapters cite author-year (``bibtex_reference_style: author_year``: "Shen et al., 2020"), while
sphinxcontrib-bibtex's default formatting style labels the list alpha-style ("[SXWS20]"), so a reader
could not find a citation in the list by its label. This registers a pybtex formatting style
``author_year_labels``, pybtex's ``unsrt`` entries sorted by author, year and title (braces ignored), each labelled
"Last, year", "Last and Other, year" or "Last et al., year" (a letter after the year where two would
read the same); _config.yml names it the bibliography's default.
"""

from collections import Counter

from pybtex.plugin import register_plugin
from pybtex.style.formatting.unsrt import Style as UnsrtStyle
from pybtex.style.labels import BaseLabelStyle
from pybtex.style.sorting.author_year_title import SortingStyle


def _plain(text: str) -> str:
    """A name without BibTeX's protecting braces ("{TencentARC}")."""
    return text.replace("{", "").replace("}", "")


def _label(entry) -> str:
    persons = entry.persons.get("author") or entry.persons.get("editor") or []
    last = [_plain(" ".join(p.last_names)) for p in persons] or [entry.fields.get("title", entry.key)]
    if len(last) > 2 or last[-1] == "others":  # BibTeX's "and others" reads "et al."
        return f"{last[0]} et al., {entry.fields.get('year', 'n.d.')}"
    who = " and ".join(last)
    return f"{who}, {entry.fields.get('year', 'n.d.')}"


class AuthorYearLabels(BaseLabelStyle):
    def format_labels(self, sorted_entries):
        labels = [_label(entry) for entry in sorted_entries]
        repeated, used = {k for k, n in Counter(labels).items() if n > 1}, Counter()
        for label in labels:
            if label in repeated:
                used[label] += 1
                label += "abcdefghijklmnopqrstuvwxyz"[used[label] - 1]
            yield label


class PlainNameSorting(SortingStyle):
    """pybtex's author, year, title order, braces ignored (a braced name would sort after every other)."""

    def person_key(self, person):
        return _plain(super().person_key(person))


class AuthorYearStyle(UnsrtStyle):
    default_label_style = AuthorYearLabels
    default_sorting_style = PlainNameSorting


def setup(app):
    register_plugin("pybtex.style.formatting", "author_year_labels", AuthorYearStyle)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
