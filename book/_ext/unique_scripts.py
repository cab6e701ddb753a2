"""Sphinx extension: emit each page script once.

sphinx-thebe (loaded by jupyter-book) registers its inline configuration script once per
``env-before-read-docs`` event, which a jupyter-book build fires twice, so every page declared
``const THEBE_JS_URL`` twice and the browser logged a SyntaxError. Dropping exact repeats (same
file, same attributes, same inline body) fixes it without touching the extension. (The same
happens to sphinx-togglebutton's inline script, harmlessly.)
"""


def _unique_scripts(app, pagename, templatename, context, doctree):
    scripts = context.get("script_files")
    if not scripts:
        return
    seen, unique = set(), []
    for script in scripts:
        # an inline script is registered with filename None once and '' the other time
        ident = (getattr(script, "filename", script) or "", repr(sorted((k, str(v)) for k, v in getattr(script, "attributes", {}).items())))
        if ident not in seen:
            seen.add(ident)
            unique.append(script)
    scripts[:] = unique


def setup(app):
    app.connect("html-page-context", _unique_scripts, priority=900)  # after the themes have added theirs
    return {"parallel_read_safe": True, "parallel_write_safe": True}
